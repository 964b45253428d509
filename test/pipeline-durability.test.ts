// Losing nothing: enqueue twice, a SIGKILLed worker, a restarted Redis, graceful SIGTERM.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAME } from '../src/fleet/keys.js';
import { RunStore } from '../src/fleet/run-store.js';
import { enqueueRun } from '../src/producer/enqueue.js';
import { enqueueOnly } from '../src/producer/run-local.js';
import { waitForRun } from '../src/producer/wait.js';
import { startRedisServer } from '../src/redis/server.js';
import { inventoryCsv } from '../src/sim/plan.js';
import { startWorker } from '../src/workers/worker.js';
import { exited, spawnCli, writeFleetFiles } from './helpers/cli.js';
import { FAST_CORE, startTestFleet, type TestFleet } from './helpers/fleet.js';
import { crashAndRestart, redisUrl, uniquePrefix } from './helpers/redis.js';
import { until } from './helpers/until.js';

const COUNT = 60;
let tf: TestFleet;
let redis: Redis;
let files: ReturnType<typeof writeFleetFiles>;

beforeAll(async () => {
  // Every reply takes 150 ms, so a run lasts long enough to be interrupted.
  tf = await startTestFleet(COUNT, '127.11.0.1', () => ({ slow: { latencyMs: 150 } }));
  redis = new Redis(redisUrl());
  files = writeFleetFiles(inventoryCsv(tf.fleet.miners.map((m, index) => ({ ...m, index }))));
});
afterAll(async () => {
  redis.disconnect();
  await tf.fleet.close();
  rmSync(files.dir, { recursive: true, force: true });
});

async function outcomeCount(store: RunStore, runId: string): Promise<number> {
  return (await store.getCounts(runId)).done;
}


async function expectExactlyOneOutcomeEach(store: RunStore, runId: string): Promise<void> {
  const outcomes = await store.getOutcomes(runId);
  expect(outcomes.length).toBe(COUNT);
  expect(new Set(outcomes.map((o) => o.minerId)).size).toBe(COUNT);
  const { done, counts } = await store.getCounts(runId);
  expect(done).toBe(COUNT);
  expect(Object.values(counts).reduce((a, b) => a + b, 0)).toBe(COUNT);
  expect(counts['OK']).toBe(COUNT);
}

describe('producer', () => {
  it('enqueuing the same run twice adds nothing', async () => {
    const prefix = uniquePrefix('twice');
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
    const store = new RunStore(redis, prefix);
    const first = await enqueueRun(queue, store, tf.inventory, { operation: 'poll' });
    const again = await enqueueRun(queue, store, tf.inventory, { operation: 'poll', runId: first.runId });
    expect(again).toEqual(first);
    expect(await queue.getWaitingCount()).toBe(COUNT);
    const other = { ...tf.inventory, digest: 'different' };
    await expect(enqueueRun(queue, store, other, { operation: 'poll', runId: first.runId })).rejects.toThrow(/already exists with a different inventory/);
    await queue.obliterate({ force: true });
    await queue.close();
  });
});

describe('worker process', () => {
  it('SIGKILLed mid-run and restarted: no job lost, no outcome duplicated', async () => {
    const prefix = uniquePrefix('kill');
    const store = new RunStore(redis, prefix);
    const record = await enqueueOnly({ redisUrl: redisUrl(), prefix, inventory: tf.inventory, operation: 'poll', credentials: tf.credentials, threads: 0, concurrency: 4 });
    const args = ['worker', '--redis', redisUrl(), '--prefix', prefix, '--credentials', files.credentials, '--concurrency', '4', '--threads', '0', '--max-connections', '64', '--lock-ms', '2000'];
    const first = spawnCli(args);
    await until(async () => (await outcomeCount(store, record.runId)) >= 10);
    first.kill('SIGKILL');
    await exited(first);
    const atKill = await outcomeCount(store, record.runId);
    expect(atKill).toBeLessThan(COUNT);
    const second = spawnCli(args);
    await until(async () => (await outcomeCount(store, record.runId)) >= COUNT);
    second.kill('SIGTERM');
    expect(await exited(second)).toBe(0);
    await expectExactlyOneOutcomeEach(store, record.runId);
  });

  it('SIGTERM finishes in-flight jobs and leaves the rest queued', async () => {
    const prefix = uniquePrefix('term');
    const store = new RunStore(redis, prefix);
    const record = await enqueueOnly({ redisUrl: redisUrl(), prefix, inventory: tf.inventory, operation: 'poll', credentials: tf.credentials, threads: 0, concurrency: 4 });
    const w = spawnCli(['worker', '--redis', redisUrl(), '--prefix', prefix, '--credentials', files.credentials, '--concurrency', '4', '--threads', '2']);
    await until(async () => (await outcomeCount(store, record.runId)) >= 5);
    w.kill('SIGTERM');
    expect(await exited(w)).toBe(0);
    expect(w.output().stdout).toContain('finishing in-flight jobs');
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
    const counts = await queue.getJobCounts('active', 'waiting', 'completed', 'failed', 'delayed');
    expect(counts['active']).toBe(0); // nothing left half-done
    expect((counts['waiting'] ?? 0) + (await outcomeCount(store, record.runId))).toBe(COUNT);
    await queue.close();
  });

  it('refuses a Redis that can lose jobs unless told otherwise', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-volatile-'));
    const volatile = await startRedisServer({ dir, appendonly: false });
    try {
      const refused = spawnCli(['worker', '--redis', volatile.url, '--credentials', files.credentials]);
      expect(await exited(refused)).toBe(1);
      expect(refused.output().stderr).toMatch(/appendonly no.*\n.*refusing to run a worker/s);
      const allowed = spawnCli(['worker', '--redis', volatile.url, '--credentials', files.credentials, '--allow-volatile-redis']);
      await until(async () => allowed.output().stdout.includes('worker:'));
      expect(allowed.output().stderr).toContain('WARNING');
      allowed.kill('SIGTERM');
      expect(await exited(allowed)).toBe(0);
    } finally {
      await volatile.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Redis restarted mid-run (AOF)', () => {
  it('loses nothing: the worker reconnects and every miner gets exactly one outcome', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-restart-'));
    let server = await startRedisServer({ dir });
    const own = new Redis(server.url, { maxRetriesPerRequest: null });
    own.on('error', () => undefined);
    const store = new RunStore(own);
    const worker = await startWorker({ redisUrl: server.url, threads: 0, concurrency: 4, credentials: tf.credentials, coreOptions: FAST_CORE });
    try {
      const record = await enqueueOnly({ redisUrl: server.url, inventory: tf.inventory, operation: 'poll', credentials: tf.credentials, threads: 0, concurrency: 4 });
      await new Promise((r) => setTimeout(r, 1_200)); // the enqueue reaches the AOF (fsync every second)
      await until(async () => (await outcomeCount(store, record.runId)) >= 10);
      server = await crashAndRestart(server);
      await waitForRun(store, record.runId, COUNT, { intervalMs: 200 });
      await expectExactlyOneOutcomeEach(store, record.runId);
    } finally {
      await worker.close();
      own.disconnect();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});

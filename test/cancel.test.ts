// `bos-fleet cancel RUN`: a poll run's queued miners get a CANCELLED outcome and leave the queue; miners
// being polled finish with their own outcome; every miner still ends with exactly one outcome.
import { rmSync } from 'node:fs';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAME } from '../src/fleet/keys.js';
import { RunStore } from '../src/fleet/run-store.js';
import { cancelRun, type CancelResult } from '../src/producer/cancel.js';
import { BACKGROUND_PRIORITY, enqueueRun } from '../src/producer/enqueue.js';
import { waitForRun } from '../src/producer/wait.js';
import { startWorker } from '../src/workers/worker.js';
import { exited, expectExit, runCli, spawnCli } from './helpers/cli.js';
import { parseInventory } from '../src/producer/inventory.js';
import { FAST_CORE, startTestFleet, type TestFleet } from './helpers/fleet.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';
import { until } from './helpers/until.js';

const COUNT = 20;
let tf: TestFleet;
let redis: Redis;
beforeAll(async () => {
  // Every reply takes 600 ms: a worker of concurrency 4 is still busy when the run is cancelled.
  tf = await startTestFleet(COUNT, '127.22.0.1', () => ({ slow: { latencyMs: 600 } }));
  redis = new Redis(redisUrl());
});
afterAll(async () => {
  redis.disconnect();
  await tf.fleet.close();
});

function setup() {
  const prefix = uniquePrefix('cancel');
  return { prefix, queue: new Queue(QUEUE_NAME, { connection: redis, prefix }), store: new RunStore(redis, prefix) };
}

describe('cancelling a poll run', () => {
  it('gives its queued miners a CANCELLED outcome, lets the running ones finish, and leaves nothing queued', async () => {
    const { prefix, queue, store } = setup();
    const record = await enqueueRun(queue, store, tf.inventory, { operation: 'poll', jobAttempts: 1 });
    const worker = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 4, credentials: tf.credentials, coreOptions: { ...FAST_CORE, readTimeoutMs: 5_000, callBudgetMs: 10_000 } });
    try {
      // Wait until the worker holds its first jobs, then cancel.
      for (let i = 0; i < 100 && (await queue.getActiveCount()) < 4; i++) await new Promise((r) => setTimeout(r, 20));
      const r = await cancelRun(queue, store, record.runId);
      expect(r.cancelled).toBeGreaterThanOrEqual(COUNT - 8);
      expect(r.cancelled).toBeLessThanOrEqual(COUNT - 4);
      await waitForRun(store, record.runId, COUNT, { intervalMs: 50 });
      const outcomes = await store.getOutcomes(record.runId);
      expect(new Set(outcomes.map((o) => o.minerId)).size).toBe(COUNT);
      const counts = (await store.getCounts(record.runId)).counts;
      expect(counts).toEqual({ CANCELLED: r.cancelled, OK: COUNT - r.cancelled });
      const cancelled = outcomes.find((o) => o.code === 'CANCELLED');
      expect(cancelled).toMatchObject({ status: 'failed', operation: 'poll', port: 50051, jobAttempts: 0 });
      expect(cancelled?.error?.message).toMatch(/run cancelled by the operator before this miner was polled/);
      expect(await queue.getRanges(['waiting', 'delayed', 'prioritized', 'active'])).toEqual([]);
      // Cancelling again changes nothing.
      expect(await cancelRun(queue, store, record.runId)).toEqual({ runId: record.runId, cancelled: 0, done: COUNT, total: COUNT, neverEnqueued: 0 });
    } finally {
      await worker.close();
      await queue.close();
    }
  });

  it('from the CLI: counts in JSON; an unknown run and a rollout run are refused with the way out', async () => {
    const { prefix, queue, store } = setup();
    // Queued for separate workers, as `poll --enqueue-only` does: prioritized jobs, cancelled as well.
    const poll = await enqueueRun(queue, store, tf.inventory, { operation: 'poll', priority: BACKGROUND_PRIORITY });
    const push = await enqueueRun(queue, store, tf.inventory, { operation: 'pause', params: { rolloutId: 'r1' } });
    await queue.close();
    const env = { REDIS_URL: redisUrl() };
    const ok = await runCli(['cancel', poll.runId, '--prefix', prefix, '--json'], env);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual({ runId: poll.runId, cancelled: COUNT, done: COUNT, total: COUNT, neverEnqueued: 0 });
    const text = await runCli(['cancel', poll.runId, '--prefix', prefix], env);
    expect(text.stdout).toContain(`run ${poll.runId} had already finished (${COUNT}/${COUNT} have an outcome): nothing to cancel`);

    const unknown = await runCli(['cancel', 'run-nope', '--prefix', prefix], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no run "run-nope"');
    const rollout = await runCli(['cancel', push.runId, '--prefix', prefix], env);
    expect(rollout.code).toBe(1);
    expect(rollout.stderr).toContain('bos-fleet rollout abort');
    expect((await store.getCounts(push.runId)).done).toBe(0); // untouched

    // A dry run of a change only reads: it is dropped like a poll (rollout start --dry-run's Ctrl-C).
    const dryQueue = new Queue(QUEUE_NAME, { connection: redis, prefix });
    const dry = await enqueueRun(dryQueue, store, tf.inventory, { operation: 'power-target', params: { mutation: { kind: 'power-target', watts: 2000 }, dryRun: true } });
    await dryQueue.close();
    const dropped = await runCli(['cancel', dry.runId, '--prefix', prefix, '--json'], env);
    expect(JSON.parse(dropped.stdout)).toMatchObject({ cancelled: COUNT, done: COUNT });
    expect((await store.getOutcomes(dry.runId))[0]?.error?.message).toContain('run cancelled by the operator before this miner was read');
  });
});

describe('bos-fleet runs', () => {
  it('warns when runs are unfinished and no worker is running to finish them, not when one is', async () => {
    const { prefix, queue, store } = setup();
    await enqueueRun(queue, store, tf.inventory, { operation: 'poll' });
    const alone = await runCli(['runs', '--prefix', prefix], { REDIS_URL: redisUrl() });
    expect(alone.stderr).toContain('bos-fleet: WARNING: 1 run is unfinished and no `bos-fleet worker` is running on this Redis and prefix');
    const worker = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 2, credentials: tf.credentials, coreOptions: FAST_CORE });
    try {
      const served = await runCli(['runs', '--prefix', prefix], { REDIS_URL: redisUrl() });
      expect(served.stderr).not.toContain('WARNING');
      expect(served.stdout).toContain('/20');
    } finally {
      await worker.close();
      await queue.close();
    }
  });
});

describe('cancelling a run still being enqueued', () => {
  it('stops its producer at the next chunk and cuts the run to the miners that got in, each with one outcome', async () => {
    const { queue, store } = setup();
    const many = parseInventory(['id,host', ...Array.from({ length: 3_000 }, (_, i) => `m${i},127.22.${Math.floor(i / 250) + 1}.${(i % 250) + 1}`)].join('\n'), 'many.csv');
    let cancelling: Promise<CancelResult> | undefined;
    const enqueue = enqueueRun(queue, store, many, {
      operation: 'poll',
      chunkSize: 50,
      paramsFor: (t) => {
        // The operator cancels while the producer is a third of the way through.
        if (t.minerId === 'm1000' && !cancelling) cancelling = store.listRuns().then(([run]) => cancelRun(queue, store, run!.runId));
        return {};
      },
    });
    await expect(enqueue).rejects.toThrow(/^run \S+ was cancelled while being enqueued: [\d,]+ of 3,000 miners were enqueued, the rest never will be$/);
    const result = await cancelling!;
    const enqueued = result.total;
    expect(enqueued).toBeGreaterThanOrEqual(1_000);
    expect(enqueued).toBeLessThan(3_000);
    expect(result).toEqual({ runId: result.runId, cancelled: enqueued, done: enqueued, total: enqueued, neverEnqueued: 3_000 - enqueued });
    expect(await queue.count()).toBe(0); // nothing left queued, nothing added after the cancel
    expect(await store.getRun(result.runId)).toMatchObject({ total: enqueued, inventoryTotal: 3_000 });
    expect((await store.getOutcomes(result.runId)).length).toBe(enqueued);
  });
});

describe('a reader that stops early', () => {
  it('`bos-fleet results RUN | head` ends quietly with 0, not with an EPIPE trace', async () => {
    const { prefix, queue, store } = setup();
    const many = parseInventory(['id,host', ...Array.from({ length: 3_000 }, (_, i) => `m${i},127.22.${Math.floor(i / 250) + 1}.${(i % 250) + 1}`)].join('\n'), 'many.csv');
    const record = await enqueueRun(queue, store, many, { operation: 'poll' });
    await cancelRun(queue, store, record.runId); // 3,000 CANCELLED outcomes to print
    await queue.close();
    const child = spawnCli(['results', record.runId, '--format', 'json', '--prefix', prefix], { REDIS_URL: redisUrl() });
    child.stdout?.once('data', () => child.stdout?.destroy()); // like `head`: read a little, close the pipe
    await expectExit(child, 0);
    expect(child.output().stderr).toBe('');
  });
});

describe('rollout start --dry-run, interrupted', () => {
  it('Ctrl-C: the miners being read finish, the rest are dropped (not left queued for a later worker), nothing is written', async () => {
    // Well over what the dry run reads at once (100), each read taking a while.
    const big = await startTestFleet(250, '127.36.0.1', () => ({ slow: { latencyMs: 400 } }));
    const { writeFleetFiles } = await import('./helpers/cli.js');
    const { inventoryCsv } = await import('../src/sim/plan.js');
    const files = writeFleetFiles(inventoryCsv(big.fleet.miners.map((m, index) => ({ ...m, index }))));
    const prefix = uniquePrefix('dryint');
    try {
      const cli = spawnCli(['rollout', 'start', '--inventory', files.inventory, '--credentials', files.credentials, '--redis', redisUrl(), '--prefix', prefix, '--power-target', '2000', '--dry-run', '--json']);
      const store = new RunStore(redis, prefix);
      await until(async () => {
        const [runId] = await redis.zrevrange(`${prefix}:runs`, 0, 0);
        return runId !== undefined && (await store.getCounts(runId)).done > 0;
      }, 30_000, 20);
      cli.kill('SIGINT');
      const code = await exited(cli);
      expect(code, JSON.stringify(cli.output()).slice(0, 2000)).toBe(130);
      const out = JSON.parse(cli.output().stdout) as { runId: string; interrupted: boolean; miners: { result: string }[] };
      expect(out.interrupted).toBe(true);
      expect(out.miners.length).toBeGreaterThan(0);
      expect(out.miners.length).toBeLessThan(250);
      expect(out.miners.every((m) => m.result === 'would-apply')).toBe(true);
      const { counts, done } = await store.getCounts(out.runId);
      expect(done).toBe(250); // every miner has its outcome: read, or CANCELLED
      expect(counts['CANCELLED']).toBe(250 - out.miners.length);
      const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
      expect(await queue.getJobCountByTypes('waiting', 'prioritized')).toBe(0);
      await queue.close();
      expect(await big.fleet.mutations()).toEqual([]);
    } finally {
      await big.fleet.close();
      rmSync(files.dir, { recursive: true, force: true });
    }
  }, 60_000);
});

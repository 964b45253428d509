// Losing nothing: enqueue twice, a SIGKILLed worker, a restarted Redis, graceful SIGTERM.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { QUEUE_NAME } from '../src/fleet/keys.js';
import { OUTCOME_BATCH_MAX, RunStore } from '../src/fleet/run-store.js';
import type { Outcome } from '../src/fleet/outcome.js';
import { BACKGROUND_PRIORITY, enqueueRun } from '../src/producer/enqueue.js';
import { isConnectionDrop } from '../src/redis/connection-drop.js';
import { openQueue } from '../src/fleet/queue.js';
import { enqueueOnly } from '../src/producer/run-local.js';
import { waitForRun } from '../src/producer/wait.js';
import { startRedisServer } from '../src/redis/server.js';
import { startWorker } from '../src/workers/worker.js';
import { CLI, exited, exitedWithin, expectExit, spawnCli, startCliFleet, type CliFleet, type FleetFiles } from './helpers/cli.js';
import { FAST_CORE, type TestFleet } from './helpers/fleet.js';
import { crashAndRestart, redisUrl, startCuttingProxy, uniquePrefix } from './helpers/redis.js';
import { until } from './helpers/until.js';

const COUNT = 60;
let cf: CliFleet;
let tf: TestFleet;
let redis: Redis;
let files: FleetFiles;

beforeAll(async () => {
  // Every reply takes 150 ms, so a run lasts long enough to be interrupted.
  ({ tf, redis, files } = cf = await startCliFleet(COUNT, '127.11.0.1', () => ({ slow: { latencyMs: 150 } })));
});
afterAll(() => cf.close());

/** Jobs queued: waiting, or prioritized (polls left to separate workers carry a lower priority). */
const queued = (counts: Record<string, number>): number => (counts['waiting'] ?? 0) + (counts['prioritized'] ?? 0);

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

describe('outcome writes', () => {
  it('outcomes finishing together go in one call per run and batch; the first per miner wins, counts never double', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-outcomes-'));
    const server = await startRedisServer({ dir }); // its own Redis: the command count below is ours alone
    const own = new Redis(server.url);
    const store = new RunStore(own);
    const outcome = (runId: string, i: number, code: Outcome['code']): Outcome => ({
      runId, minerId: `m${i}`, host: '127.0.0.1', port: 50051, operation: 'poll', status: code === 'OK' ? 'ok' : 'failed',
      code, attempts: 1, jobAttempts: 1, durationMs: 1, finishedAt: new Date().toISOString(), transport: 'plaintext',
    });
    try {
      const n = OUTCOME_BATCH_MAX + 44;
      const evalshaCalls = async () => Number(/cmdstat_evalsha:calls=(\d+)/.exec(await own.info('commandstats'))?.[1] ?? 0);
      await store.writeOutcome(outcome('run-x', 0, 'OK')); // loads the script (EVAL, then EVALSHA)
      const before = await evalshaCalls();
      const writes = [
        ...Array.from({ length: n }, (_, i) => store.writeOutcome(outcome('run-a', i, i % 2 ? 'OK' : 'MINER_TIMEOUT'))),
        ...Array.from({ length: 50 }, (_, i) => store.writeOutcome(outcome('run-a', i, 'MINER_AUTH_FAILED'))), // the same miners again
        ...Array.from({ length: n }, (_, i) => store.writeOutcome(outcome('run-b', i, 'OK'))),
      ];
      const written = await Promise.all(writes);
      expect(written.slice(0, n).every(Boolean)).toBe(true);
      expect(written.slice(n, n + 50).some(Boolean)).toBe(false);
      expect(written.slice(n + 50).every(Boolean)).toBe(true);
      // 2 runs × 2 batches (OUTCOME_BATCH_MAX + the rest) instead of 2n + 50 calls.
      expect((await evalshaCalls()) - before).toBe(4);
      expect(await store.getCounts('run-a')).toEqual({ done: n, counts: { OK: n / 2, MINER_TIMEOUT: n / 2 }, changes: {} });
      expect(await store.getCounts('run-b')).toEqual({ done: n, counts: { OK: n }, changes: {} });
      expect((await store.getOutcome('run-a', 'm0'))?.code).toBe('MINER_TIMEOUT');
      // A change's OK outcomes are counted by what they did, once per miner too; a failed one is not.
      const change = (i: number, what: string): Outcome => ({ ...outcome('run-d', i, 'OK'), operation: 'power-target', data: { change: what, before: 1, after: 2, verified: true } });
      await Promise.all([change(0, 'applied'), change(1, 'applied'), change(2, 'unchanged'), change(0, 'unchanged'), outcome('run-d', 3, 'VERIFY_MISMATCH')].map((o) => store.writeOutcome(o)));
      expect(await store.getCounts('run-d')).toEqual({ done: 4, counts: { OK: 3, VERIFY_MISMATCH: 1 }, changes: { applied: 2, unchanged: 1 } });
      // A write after a failed connection is reported to its caller, not lost silently.
      own.disconnect();
      await expect(store.writeOutcome(outcome('run-c', 0, 'OK'))).rejects.toThrow(/closed/i);
    } finally {
      own.disconnect();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('worker process', () => {
  it('SIGKILLed mid-run and restarted: no job lost, no outcome duplicated', async () => {
    const prefix = uniquePrefix('kill');
    const store = new RunStore(redis, prefix);
    const record = await enqueueOnly({ redisUrl: redisUrl(), prefix, inventory: tf.inventory, operation: 'poll', credentials: tf.credentials, threads: 0, concurrency: 4 });
    const args = ['worker', '--redis', redisUrl(), '--prefix', prefix, '--credentials', files.credentials, '--concurrency', '4', '--consumers', '2', '--threads', '0', '--max-connections', '64', '--lock-ms', '2000', '--report-every', '1s'];
    const first = spawnCli(args);
    await until(async () => (await outcomeCount(store, record.runId)) >= 10);
    first.kill('SIGKILL');
    await exited(first);
    const atKill = await outcomeCount(store, record.runId);
    expect(atKill).toBeLessThan(COUNT);
    const second = spawnCli(args);
    await until(async () => (await outcomeCount(store, record.runId)) >= COUNT);
    second.kill('SIGTERM');
    await expectExit(second, 0);
    await expectExactlyOneOutcomeEach(store, record.runId);
    // The worker logs what it did: every second while busy, and in total when it stops.
    expect(second.output().stdout).toMatch(/worker: last 1s: \d+ outcomes? \(OK \d+\)/);
    expect(second.output().stdout).toMatch(/worker: stopped after \d+ outcomes \(OK \d+\)/);
  });

  it('the worker that handed-on jobs went to, SIGKILLed mid-run and restarted: none lost, none duplicated', async () => {
    const prefix = uniquePrefix('killon');
    const store = new RunStore(redis, prefix);
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
    const args = ['worker', '--redis', redisUrl(), '--prefix', prefix, '--credentials', files.credentials, '--concurrency', '4', '--consumers', '2', '--threads', '0', '--lock-ms', '2000', '--report-every', '0'];
    const first = spawnCli(args);
    await until(async () => (await redis.scard(`${prefix}:workers`)) === 1);
    // A worker with no password for these miners: every job it takes goes to the other's queue.
    const other = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 4, credentials: new Map([['elsewhere', { username: 'u', password: 'p' }]]), coreOptions: FAST_CORE });
    try {
      const record = await enqueueRun(queue, store, tf.inventory, { operation: 'poll' });
      await until(async () => (await outcomeCount(store, record.runId)) >= 10);
      first.kill('SIGKILL');
      await exited(first);
      expect(await outcomeCount(store, record.runId)).toBeLessThan(COUNT);
      const second = spawnCli(args);
      await until(async () => (await outcomeCount(store, record.runId)) >= COUNT);
      second.kill('SIGTERM');
      await expectExit(second, 0);
      await expectExactlyOneOutcomeEach(store, record.runId);
      const handedOn = (await queue.getCompleted()).filter((j) => (j.returnvalue as { code?: string }).code === 'HANDED_ON');
      expect(handedOn.length).toBeGreaterThan(0);
    } finally {
      await other.close();
      await queue.close();
    }
  });

  // SIGHUP: the worker's terminal closed (an ssh session dropped).
  it.each(['SIGTERM', 'SIGHUP'] as const)('%s finishes in-flight jobs and leaves the rest queued', async (signal) => {
    const prefix = uniquePrefix(`term-${signal}`);
    const store = new RunStore(redis, prefix);
    const record = await enqueueOnly({ redisUrl: redisUrl(), prefix, inventory: tf.inventory, operation: 'poll', credentials: tf.credentials, threads: 0, concurrency: 4 });
    const w = spawnCli(['worker', '--redis', redisUrl(), '--prefix', prefix, '--credentials', files.credentials, '--concurrency', '4', '--consumers', '2', '--threads', '2']);
    await until(async () => (await outcomeCount(store, record.runId)) >= 5);
    w.kill(signal);
    await expectExit(w, 0);
    expect(w.output().stdout).toContain('concurrency 4 over 2 consumer(s)');
    expect(w.output().stdout).toContain(`worker: ${signal}, finishing in-flight jobs`);
    const done = await outcomeCount(store, record.runId);
    expect(w.output().stdout).toContain(`worker: stopped after ${done} outcomes (OK ${done})`);
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
    const counts = await queue.getJobCounts('active', 'waiting', 'prioritized', 'completed', 'failed', 'delayed');
    expect(counts['active']).toBe(0); // nothing left half-done
    expect(queued(counts) + (await outcomeCount(store, record.runId))).toBe(COUNT);
    await queue.close();
  });

  it('a worker whose output goes away (its log pipe closed) finishes its jobs in flight and stops, instead of dying', async () => {
    const prefix = uniquePrefix('epipe');
    const store = new RunStore(redis, prefix);
    const record = await enqueueOnly({ redisUrl: redisUrl(), prefix, inventory: tf.inventory, operation: 'poll', credentials: tf.credentials, threads: 0, concurrency: 4 });
    const w = spawnCli(['worker', '--redis', redisUrl(), '--prefix', prefix, '--credentials', files.credentials, '--concurrency', '4', '--report-every', '1s']);
    await until(async () => (await outcomeCount(store, record.runId)) >= 5);
    // Its reader goes away: the next report line fails with EPIPE.
    w.stdout?.destroy();
    w.stderr?.destroy();
    await expectExit(w, 0);
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
    const counts = await queue.getJobCounts('active', 'waiting', 'prioritized');
    expect(counts['active']).toBe(0); // nothing left half-done
    expect(queued(counts) + (await outcomeCount(store, record.runId))).toBe(COUNT);
    expect(queued(counts)).toBeGreaterThan(0); // it stopped: the rest waits for another worker
    await queue.close();
  });

  it('a worker whose log disk is full (/dev/full) goes on working, and stops with 1 for its lost output; a command whose output is its work stops at once', async () => {
    const prefix = uniquePrefix('enospc');
    const store = new RunStore(redis, prefix);
    const full = openSync('/dev/full', 'w');
    const w = spawn(process.execPath, [CLI, 'worker', '--redis', redisUrl(), '--prefix', prefix, '--credentials', files.credentials, '--concurrency', '4', '--report-every', '1s'], { stdio: ['ignore', full, 'pipe'] });
    let stderr = '';
    w.stderr?.on('data', (d) => (stderr += d));
    closeSync(full);
    try {
      await until(async () => stderr.includes('its output cannot be written (ENOSPC'), 10_000);
      // Its start-up line was lost, not fatal: it polls.
      const record = await enqueueOnly({ redisUrl: redisUrl(), prefix, inventory: tf.inventory, operation: 'poll', credentials: tf.credentials, threads: 0, concurrency: 4 });
      await until(async () => (await outcomeCount(store, record.runId)) >= 5);
      await new Promise((r) => setTimeout(r, 1_200)); // a report line or two lost as well
      expect(w.exitCode).toBeNull();
      w.kill('SIGTERM');
      expect(await exitedWithin(w)).toBe(1);
      const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
      expect(await queue.getActiveCount()).toBe(0); // its jobs in flight finished
      await queue.close();
    } finally {
      if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL');
    }
    const runs = spawnSync(process.execPath, [CLI, 'runs', '--redis', redisUrl(), '--prefix', prefix], { stdio: ['ignore', openSync('/dev/full', 'w'), 'pipe'], encoding: 'utf8' });
    expect(runs.status).toBe(1);
    expect(runs.stderr).toContain('bos-fleet: cannot write its output (ENOSPC');
  });

  // SIGHUP: the terminal poll runs in closed (an ssh session dropped).
  it.each(['SIGINT', 'SIGHUP'] as const)('poll interrupted by %s: in-flight jobs finish, the rest stay queued, a worker completes the run once', async (signal) => {
    const prefix = uniquePrefix(`int-${signal}`);
    const store = new RunStore(redis, prefix);
    const poll = spawnCli(['poll', '--inventory', files.inventory, '--credentials', files.credentials, '--redis', redisUrl(), '--prefix', prefix, '--concurrency', '4', '--json']);
    let runId = '';
    await until(async () => {
      runId = (await store.listRuns(1))[0]?.runId ?? '';
      return runId !== '' && (await outcomeCount(store, runId)) >= 5;
    });
    poll.kill(signal);
    await expectExit(poll, 130);
    const { stdout, stderr } = poll.output();
    const printed = JSON.parse(stdout) as { runId: string; total: number; counts: Record<string, number> };
    const done = await outcomeCount(store, runId);
    expect(done).toBeLessThan(COUNT);
    expect(printed).toMatchObject({ runId, total: COUNT, counts: { OK: done } });
    expect(stderr).toContain(`interrupted: ${COUNT - done} of ${COUNT} miners not polled; their jobs stay queued`);
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
    const counts = await queue.getJobCounts('active', 'waiting', 'prioritized');
    // Left as a background poll: the next poll an operator waits for goes ahead of them.
    const left = await queue.getJobs(['prioritized', 'delayed']);
    await queue.close();
    expect(counts['active']).toBe(0);
    expect(queued(counts) + done).toBe(COUNT);
    expect(left.length).toBe(COUNT - done);
    expect(left.every((j) => j.priority === BACKGROUND_PRIORITY)).toBe(true);
    // Left to the workers: they can put in again jobs Redis loses (producer/run-keeper.ts).
    expect(await redis.exists(store.k.kept(runId))).toBe(1);
    const w = spawnCli(['worker', '--redis', redisUrl(), '--prefix', prefix, '--credentials', files.credentials, '--concurrency', '8']);
    await until(async () => (await outcomeCount(store, runId)) >= COUNT);
    w.kill('SIGTERM');
    await expectExit(w, 0);
    await expectExactlyOneOutcomeEach(store, runId);
  });

  // A real terminal that hangs up: `script` gives the poll a pseudo-terminal, and killing `script`
  // closes it (SIGHUP, then EIO on every write to it). util-linux's `script` is on every Debian.
  it.skipIf(spawnSync('script', ['--version']).error !== undefined)('poll in a terminal that hangs up: in-flight jobs finish, the rest stay queued, and it ends by SIGHUP, not a Node abort', async () => {
    const prefix = uniquePrefix('hangup');
    const store = new RunStore(redis, prefix);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-hangup-'));
    try {
      const pidFile = path.join(dir, 'pid');
      const errFile = path.join(dir, 'stderr');
      const command = `echo $$ > ${pidFile}; exec ${process.execPath} ${CLI} poll --inventory ${files.inventory} --credentials ${files.credentials} --redis ${redisUrl()} --prefix '${prefix}' --concurrency 4 2> ${errFile}`;
      const terminal = spawn('script', ['-qfc', command, '/dev/null'], { stdio: 'ignore', env: { ...process.env, BOS_FLEET_HOME: path.join(os.tmpdir(), 'bos-fleet-test-home') } });
      let runId = '';
      await until(async () => {
        runId = (await store.listRuns(1))[0]?.runId ?? '';
        return runId !== '' && (await outcomeCount(store, runId)) >= 5;
      });
      const pid = Number(readFileSync(pidFile, 'utf8'));
      terminal.kill('SIGKILL');
      await until(async () => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true; // the poll has ended
        }
      });
      const stderr = readFileSync(errFile, 'utf8');
      expect(stderr).toContain('bos-fleet: SIGHUP: stopping: the jobs in flight finish, the rest stay queued');
      expect(stderr).not.toContain('Assertion failed');
      const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
      const counts = await queue.getJobCounts('active', 'waiting', 'prioritized');
      await queue.close();
      expect(counts['active']).toBe(0);
      expect(queued(counts) + (await outcomeCount(store, runId))).toBe(COUNT);
      expect(queued(counts)).toBeGreaterThan(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('stopped while Redis is down: jobs in flight wait for it to record their outcomes (said), a worker with none stops at once', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-stop-down-'));
    let server = await startRedisServer({ dir });
    const prefix = uniquePrefix('stopdown');
    const own = new Redis(server.url, { maxRetriesPerRequest: null });
    own.on('error', () => undefined);
    const queue = new Queue(QUEUE_NAME, { connection: own, prefix });
    queue.on('error', () => undefined);
    const workers: ReturnType<typeof spawnCli>[] = [];
    try {
      const record = await enqueueOnly({ redisUrl: server.url, prefix, inventory: { ...tf.inventory, targets: tf.inventory.targets.slice(0, 1) }, operation: 'poll', credentials: tf.credentials, threads: 0, concurrency: 1 });
      const busy = spawnCli(['worker', '--redis', server.url, '--prefix', prefix, '--credentials', files.credentials, '--concurrency', '1']);
      const idle = spawnCli(['worker', '--redis', server.url, '--prefix', uniquePrefix('stopidle'), '--credentials', files.credentials]);
      workers.push(busy, idle);
      await until(async () => busy.output().stdout.includes('worker:') && idle.output().stdout.includes('worker:'));
      // The poll's job in flight (its miner answers in 150 ms per call): Redis goes, then both are told to stop.
      await until(async () => (await queue.getActiveCount()) === 1, 10_000, 10);
      server.process.kill('SIGKILL');
      await new Promise((r) => server.process.once('exit', r));
      busy.kill('SIGTERM');
      idle.kill('SIGTERM');
      await expectExit(idle, 0);
      expect(idle.output().stdout).toContain('worker: Redis is unreachable or not answering, and no job is in flight: stopped without it');
      await until(async () => busy.output().stdout.includes('worker: Redis is unreachable or not answering: the 1 job in flight wait for it to record their outcomes'), 10_000);
      expect(busy.exitCode).toBeNull();
      server = await startRedisServer({ dir, port: server.port });
      // Back: the job records its outcome and the worker stops (past BullMQ's close, which can hang after an outage).
      await expectExit(busy, 0);
      expect(await outcomeCount(new RunStore(own, prefix), record.runId)).toBe(1);
    } finally {
      // A failed assertion must not leave a worker behind.
      for (const w of workers) if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL');
      await queue.close();
      own.disconnect();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a Redis that can lose jobs unless told otherwise', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-volatile-'));
    const volatile = await startRedisServer({ dir, appendonly: false });
    try {
      const refused = spawnCli(['worker', '--redis', volatile.url, '--credentials', files.credentials]);
      await expectExit(refused, 1);
      expect(refused.output().stderr).toMatch(/appendonly no.*\n.*refusing to run a worker/s);
      // Each line says who speaks once (the refusal went through the CLI's error print, which adds it).
      expect(refused.output().stderr).not.toContain('bos-fleet: bos-fleet:');
      const allowed = spawnCli(['worker', '--redis', volatile.url, '--credentials', files.credentials, '--allow-volatile-redis']);
      await until(async () => allowed.output().stdout.includes('worker:'));
      expect(allowed.output().stderr).toContain('WARNING');
      allowed.kill('SIGTERM');
      await expectExit(allowed, 0);
    } finally {
      await volatile.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('worker start-up', () => {
  it('a SIGTERM while it starts (its consumers being set up) stops it cleanly, not by the signal', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-starting-'));
    const server = await startRedisServer({ dir });
    const admin = new Redis(server.url);
    let worker: ReturnType<typeof spawnCli> | undefined;
    try {
      // Writes held: the worker gets past its start-up checks (reads) and waits in its first write.
      await admin.call('CLIENT', 'PAUSE', '8000', 'WRITE');
      worker = spawnCli(['worker', '--redis', server.url, '--credentials', files.credentials]);
      const clients = async () => String(await admin.call('CLIENT', 'LIST')).trim().split('\n').length;
      await until(async () => (await clients()) >= 3, 8_000, 20);
      expect(worker.output().stdout).not.toContain('worker:');
      worker.kill('SIGTERM');
      await until(async () => worker!.output().stdout.includes('worker: SIGTERM, finishing in-flight jobs'), 5_000);
      await admin.call('CLIENT', 'UNPAUSE');
      await expectExit(worker, 0);
      expect(worker.output().stdout).toContain('worker: stopped after 0 outcomes');
    } finally {
      if (worker && worker.exitCode === null && worker.signalCode === null) worker.kill('SIGKILL');
      admin.disconnect();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('connection cut mid-enqueue', () => {
  it('the enqueue goes on once Redis is back: the whole run, every job once (it was cut at the chunk the drop aborted)', async () => {
    const prefix = uniquePrefix('cut');
    // Redis replies to part of a chunk's pipeline, then the connection drops: ioredis aborts the rest.
    const proxy = await startCuttingProxy(Number(new URL(redisUrl()).port));
    const own = new Redis(proxy.url, { maxRetriesPerRequest: null });
    own.on('error', () => undefined);
    const queue = openQueue(QUEUE_NAME, own, prefix);
    const store = new RunStore(own, prefix);
    // No worker runs: these addresses are never contacted.
    const targets = Array.from({ length: 10_000 }, (_, i) => ({ minerId: `m${i}`, host: `127.11.${100 + (i >> 8)}.${i & 255}`, port: 50051, site: 's', tags: [], credentials: 'default' }));
    try {
      const enqueue = enqueueRun(queue, store, { file: 'farm.csv', targets, digest: 'd' }, { operation: 'poll', chunkSize: 100 });
      const direct = openQueue(QUEUE_NAME, redis, prefix); // counts without going through the proxy
      await until(async () => (await direct.getWaitingCount()) >= 200);
      proxy.cutAfterFirstReply();
      const record = await enqueue;
      expect(proxy.cuts()).toBe(1); // the cut came while the enqueue was under way
      expect(record.total).toBe(10_000);
      expect(record.inventoryTotal).toBeUndefined();
      expect(await queue.getWaitingCount()).toBe(10_000);
      expect((await store.enqueueState(record.runId)).enqueued).toBe(true);
    } finally {
      await queue.close();
      own.disconnect();
      await proxy.close();
    }
  }, 60_000);

  it('tells a dropped connection from a refusal', () => {
    expect(isConnectionDrop(new Error('Command aborted due to connection close'))).toBe(true);
    expect(isConnectionDrop(new Error('Connection is closed.'))).toBe(true);
    expect(isConnectionDrop(Object.assign(new Error("OOM command not allowed when used memory > 'maxmemory'."), { name: 'ReplyError' }))).toBe(false);
    expect(isConnectionDrop(Object.assign(new Error('READONLY You can\'t write against a read only replica.'), { name: 'ReplyError' }))).toBe(false);
  });
});

describe('Redis restarted mid-run (AOF)', () => {
  it('loses nothing: the worker reconnects and every miner gets exactly one outcome', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-restart-'));
    let server = await startRedisServer({ dir });
    const own = new Redis(server.url, { maxRetriesPerRequest: null });
    own.on('error', () => undefined);
    const store = new RunStore(own);
    const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    // A job whose end the restarted Redis lacks (written after Redis's last AOF write before the kill)
    // runs again once its lock expires and a stalled check sees it: up to 60 s with the default lock and
    // check (this test took 60.8 s once in a loaded full run, 7–9 s otherwise).
    const worker = await startWorker({ redisUrl: server.url, threads: 0, concurrency: 4, credentials: tf.credentials, coreOptions: FAST_CORE, lockDurationMs: 5_000, stalledIntervalMs: 2_500 });
    try {
      const record = await enqueueOnly({ redisUrl: server.url, inventory: tf.inventory, operation: 'poll', credentials: tf.credentials, threads: 0, concurrency: 4 });
      await new Promise((r) => setTimeout(r, 1_200)); // the enqueue reaches the AOF (fsync every second)
      await until(async () => (await outcomeCount(store, record.runId)) >= 10);
      server = await crashAndRestart(server);
      await waitForRun(store, record.runId, COUNT, { intervalMs: 200 });
      await expectExactlyOneOutcomeEach(store, record.runId);
      // The worker's log says Redis went, and that it came back.
      const lines = logged.mock.calls.map((c) => String(c[0]));
      expect(lines.filter((l) => l.startsWith('worker: Redis unreachable')).length).toBeGreaterThanOrEqual(1);
      expect(lines.filter((l) => /^worker: Redis reachable again \(unreachable for \d+ s\)$/.test(l))).toHaveLength(1);
    } finally {
      logged.mockRestore();
      await worker.close();
      own.disconnect();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});

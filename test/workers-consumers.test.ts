// A worker process splits its job concurrency over several BullMQ consumers (they fill their slots
// side by side at the start of a run): together they never hold more than --concurrency jobs, and
// every job still runs once.
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAME } from '../src/fleet/keys.js';
import { RunStore } from '../src/fleet/run-store.js';
import { BACKGROUND_PRIORITY, enqueueRun, FOREGROUND_PRIORITY } from '../src/producer/enqueue.js';
import { runLocal } from '../src/producer/run-local.js';
import { startRollout } from '../src/rollout/create.js';
import { waitForRollout } from '../src/rollout/wait.js';
import { waitForRun } from '../src/producer/wait.js';
import { consumerSlots, JOBS_PER_CONSUMER, startWorker } from '../src/workers/worker.js';
import { FAST_CORE, powerTargetPlan, type TestFleet, startRedisFleet, type RedisFleet } from './helpers/fleet.js';
import { until } from './helpers/until.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';

describe('consumerSlots', () => {
  it('splits concurrency evenly, one consumer per JOBS_PER_CONSUMER jobs by default', () => {
    expect(consumerSlots(200)).toEqual(Array.from({ length: 200 / JOBS_PER_CONSUMER }, () => JOBS_PER_CONSUMER));
    expect(consumerSlots(16)).toEqual([16]);
    expect(consumerSlots(60)).toEqual([20, 20, 20]);
    expect(consumerSlots(10, 3)).toEqual([4, 3, 3]);
  });

  it('never makes more consumers than jobs, nor fewer than one', () => {
    expect(consumerSlots(3, 8)).toEqual([1, 1, 1]);
    expect(consumerSlots(5, 0)).toEqual([5]);
    for (const c of [1, 7, 25, 26, 199, 200, 1000]) expect(consumerSlots(c).reduce((a, b) => a + b, 0)).toBe(c);
  });
});

const COUNT = 60;
let tf: TestFleet;
let redis: Redis;
let rf: RedisFleet;
beforeAll(async () => {
  // Slow replies keep jobs in flight long enough to overlap.
  ({ tf, redis } = rf = await startRedisFleet(COUNT, '127.10.6.1', () => ({ slow: { latencyMs: 120 } })));
});
afterAll(() => rf.close());

describe('a worker with several consumers', () => {
  it('keeps at most --concurrency jobs in flight across its consumers, with more than one consumer busy, and runs every job once', async () => {
    const prefix = uniquePrefix('consumers');
    const concurrency = 20;
    // Timeouts well above the replies' 120 ms: this test is about slots, not timeouts. With FAST_CORE's
    // 800 ms, one miner ended non-OK in one full suite run (4 files at once on 2 cores; its code was not
    // shown then: the assertion below names it now).
    const coreOptions = { ...FAST_CORE, readTimeoutMs: 3_000, loginTimeoutMs: 3_000, callBudgetMs: 8_000 };
    const worker = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency, consumers: 4, credentials: tf.credentials, coreOptions });
    expect(worker.workers.map((w) => w.concurrency)).toEqual([5, 5, 5, 5]);
    // Count the jobs inside the executor at once (the processor looks `run` up on every job).
    let inFlight = 0;
    let maxInFlight = 0;
    let runs = 0;
    const run = worker.executor.run.bind(worker.executor);
    Object.assign(worker.executor, {
      run: async (input: Parameters<typeof run>[0]) => {
        runs++;
        maxInFlight = Math.max(maxInFlight, ++inFlight);
        try {
          return await run(input);
        } finally {
          inFlight--;
        }
      },
    });
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
    const store = new RunStore(redis, prefix);
    try {
      const record = await enqueueRun(queue, store, tf.inventory, { operation: 'poll' });
      await waitForRun(store, record.runId, record.total, { intervalMs: 50 });
      const outcomes = await store.getOutcomes(record.runId);
      expect(outcomes.length).toBe(COUNT);
      expect(new Set(outcomes.map((o) => o.minerId)).size).toBe(COUNT);
      expect(outcomes.filter((o) => o.code !== 'OK').map((o) => `${o.minerId} ${o.code} ${o.jobAttempts}: ${o.error?.message}`)).toEqual([]);
      expect(runs).toBe(COUNT);
      expect(maxInFlight).toBeLessThanOrEqual(concurrency);
      // One consumer alone holds 5: more in flight means several filled their slots side by side.
      expect(maxInFlight).toBeGreaterThan(5);
    } finally {
      await worker.close();
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });
});

describe('job order', () => {
  it("a rollout started while a foreground poll is under way has its miners changed before that poll's miners left", async () => {
    const prefix = uniquePrefix('order-ro');
    const store = new RunStore(redis, prefix);
    // The operator's poll of 30 miners, two at a time (the worker that also carries out the rollout).
    const thirty = { ...tf.inventory, targets: tf.inventory.targets.slice(0, 30) };
    const polling = runLocal({ redisUrl: redisUrl(), prefix, inventory: thirty, operation: 'poll', credentials: tf.credentials, threads: 0, concurrency: 2, coreOptions: FAST_CORE });
    try {
      let runId = '';
      await until(async () => (runId = (await store.listRuns()).at(0)?.runId ?? '') !== '', 10_000, 20);
      await until(async () => (await store.getCounts(runId)).done >= 2, 20_000, 20);
      const three = { ...tf.inventory, targets: tf.inventory.targets.slice(40, 43) };
      const rec = await startRollout(redis, powerTargetPlan({ ...tf, inventory: three }, 2_620, { minSample: 1 }), prefix);
      const stop = new AbortController();
      const rolledOut = waitForRollout(redis, rec.rolloutId, prefix, undefined, stop.signal);
      // In FIFO order the poll's 30 miners would all have come first (and its worker gone with them).
      const first = await Promise.race([rolledOut.then(() => 'rollout'), polling.then(() => 'poll')]).finally(() => stop.abort());
      expect(first).toBe('rollout');
      expect((await rolledOut)?.state).toBe('completed');
      expect((await store.getCounts(runId)).done).toBeLessThan(25);
    } finally {
      const { summary } = await polling;
      expect(summary.counts).toEqual({ OK: 30 });
    }
  });

  it("a rollout's or a foreground poll's jobs go ahead of queued background polls (poll --enqueue-only, schedule ticks)", async () => {
    const prefix = uniquePrefix('order');
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
    const store = new RunStore(redis, prefix);
    // The farm's regular poll of every miner, queued for separate workers, then an operator's poll of ten.
    const background = await enqueueRun(queue, store, tf.inventory, { operation: 'poll', priority: BACKGROUND_PRIORITY });
    const ten = { ...tf.inventory, file: 'rack.csv', targets: tf.inventory.targets.slice(0, 10) };
    const foreground = await enqueueRun(queue, store, ten, { operation: 'poll', priority: FOREGROUND_PRIORITY });
    let worker = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 2, consumers: 1, credentials: tf.credentials, coreOptions: FAST_CORE });
    try {
      await waitForRun(store, foreground.runId, 10, { intervalMs: 20 });
      // In FIFO order all 60 background miners came first; now at most the jobs taken beside its last ones.
      expect((await store.getCounts(background.runId)).done).toBeLessThanOrEqual(2);
      // The rest still run (a wider worker: two at a time would take seconds; with the core's own
      // timeouts, as sixty miners at once on a loaded machine can take longer than FAST_CORE's).
      await worker.close();
      worker = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 12, credentials: tf.credentials });
      await waitForRun(store, background.runId, COUNT, { intervalMs: 50 });
      expect((await store.getOutcomes(background.runId)).every((o) => o.code === 'OK')).toBe(true);
    } finally {
      await worker.close();
      await queue.obliterate({ force: true });
      await queue.close();
    }
  });
});

// Workers configured differently on one queue: a job a worker cannot do moves once, to the queue of the
// workers that can (never fetched, refused and re-queued again and again); a configuration whose
// workers all stopped leaves its jobs to the others; cancel, and waking delayed jobs, find handed-on
// jobs too.
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { handOnQueue, handOnQueueName, signatureOf } from '../src/fleet/hand-on-queues.js';
import type { JobData } from '../src/fleet/job.js';
import { QUEUE_NAME, keys } from '../src/fleet/keys.js';
import { RunStore } from '../src/fleet/run-store.js';
import { cancelRun } from '../src/producer/cancel.js';
import { BACKGROUND_PRIORITY, enqueueRun } from '../src/producer/enqueue.js';
import { parseInventory, type Inventory } from '../src/producer/inventory.js';
import { waitForRun } from '../src/producer/wait.js';
import { promoteJobs } from '../src/rollout/site-limit.js';
import { SIM_PASSWORD, SIM_USERNAME } from '../src/sim/miner.js';
import { forgetIfEmpty, handOn, handedOnBefore } from '../src/workers/hand-on.js';
import { WorkerRegistry } from '../src/workers/registry.js';
import { startWorker } from '../src/workers/worker.js';
import { FAST_CORE, startTestFleet, type TestFleet } from './helpers/fleet.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';
import { until } from './helpers/until.js';
import { runCli } from './helpers/cli.js';

const COUNT = 12;
const simCreds = { username: SIM_USERNAME, password: SIM_PASSWORD };
const FULL = { profiles: ['default', 'site2'], tlsSites: [] };
let tf: TestFleet;
let redis: Redis;
/** Every odd miner on profile "site2". */
let inventory: Inventory;

beforeAll(async () => {
  tf = await startTestFleet(COUNT, '127.41.0.1');
  redis = new Redis(redisUrl());
  inventory = parseInventory(['id,host,port,site,tags,credentials', ...tf.fleet.miners.map((m, i) => `${m.id},${m.host},${m.port},site-a,,${i % 2 ? 'site2' : 'default'}`)].join('\n'), 'two-profiles.csv');
});
afterAll(async () => {
  redis.disconnect();
  await tf.fleet.close();
});

const worker = (prefix: string, profiles: Record<string, typeof simCreds>) => startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 4, credentials: new Map(Object.entries(profiles)), coreOptions: FAST_CORE });

/** Delayed events of a queue's event stream: each hand-back of the old design was one. */
async function delayedEvents(prefix: string, queue: string): Promise<number> {
  const entries = await redis.xrange(`${prefix}:${queue}:events`, '-', '+');
  return entries.filter(([, fields]) => fields[fields.indexOf('event') + 1] === 'delayed').length;
}

/**
 * A worker with only "default" takes every job while a worker configured with both profiles is
 * announced but not yet consuming: the "site2" jobs must go to that configuration's queue.
 */
async function handedOnRun(prefix: string, priority = 0) {
  const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
  const store = new RunStore(redis, prefix);
  const announced = new WorkerRegistry(redis, prefix, FULL);
  await announced.start();
  const plain = await worker(prefix, { default: simCreds });
  const record = await enqueueRun(queue, store, inventory, { operation: 'poll', jobAttempts: 1, priority });
  const theirs = handOnQueue(queue, signatureOf(FULL));
  const queued = async () => Object.values(await theirs.getJobCounts('waiting', 'prioritized')).reduce((a, b) => a + b, 0);
  for (let i = 0; i < 100 && (await queued()) < COUNT / 2; i++) await new Promise((r) => setTimeout(r, 50));
  return { queue, store, record, announced, plain, theirs };
}

describe('a job this worker cannot do', () => {
  it('moves once, to the queue of the configuration that can do it, and runs there: no job goes round the queue', async () => {
    const prefix = uniquePrefix('hand');
    const { queue, store, record, announced, plain, theirs } = await handedOnRun(prefix);
    try {
      expect(await theirs.getJobCounts('waiting')).toMatchObject({ waiting: COUNT / 2 });
      // `bos-fleet workers` says where they wait.
      const listed = await runCli(['workers', '--prefix', prefix], { REDIS_URL: redisUrl() });
      expect(listed.stdout).toContain(`handed on to workers with default,site2 / -: ${COUNT / 2} waiting, 0 running, 0 delayed (queue ${handOnQueueName(signatureOf(FULL))})`);
      await waitForRun(store, record.runId, COUNT / 2, { intervalMs: 50 }); // the "default" miners
      await new Promise((r) => setTimeout(r, 300));
      expect((await store.getCounts(record.runId)).done).toBe(COUNT / 2); // and no other
      const full = await worker(prefix, { default: simCreds, site2: simCreds });
      try {
        await waitForRun(store, record.runId, record.total, { intervalMs: 50 });
      } finally {
        await full.close();
      }
      const outcomes = await store.getOutcomes(record.runId);
      expect(outcomes.map((o) => `${o.minerId} ${o.code} ${o.jobAttempts}`).sort()).toEqual(tf.fleet.miners.map((m) => `${m.id} OK 1`).sort());
      const handedOn = (await queue.getCompleted()).filter((j) => (j.returnvalue as { code?: string }).code === 'HANDED_ON');
      expect(handedOn.map((j) => j.data.target.credentials)).toEqual(Array(COUNT / 2).fill('site2'));
      expect(await theirs.getJobCounts('completed')).toMatchObject({ completed: COUNT / 2 });
      expect(await delayedEvents(prefix, QUEUE_NAME)).toBe(0);
      expect(await delayedEvents(prefix, handOnQueueName(signatureOf(FULL)))).toBe(0);
    } finally {
      await plain.close();
      await announced.stop();
      await queue.close();
    }
  });

  it('keeps its priority: a background poll handed on does not go ahead of rollouts there', async () => {
    const prefix = uniquePrefix('hand-prio');
    const { queue, theirs, announced, plain } = await handedOnRun(prefix, BACKGROUND_PRIORITY);
    try {
      expect(await theirs.getJobCounts('waiting', 'prioritized')).toEqual({ waiting: 0, prioritized: COUNT / 2 });
    } finally {
      await plain.close();
      await announced.stop();
      await queue.close();
    }
  });

  it('when every worker of that configuration stops, the others take its queue: the miners get an outcome saying what is missing', async () => {
    const prefix = uniquePrefix('hand');
    const { queue, store, record, announced, plain } = await handedOnRun(prefix);
    try {
      await announced.stop(); // its queue has no worker now
      await waitForRun(store, record.runId, record.total, { intervalMs: 50, signal: AbortSignal.timeout(20_000) });
      const byCode = new Map((await store.getOutcomes(record.runId)).map((o) => [o.minerId, o] as const));
      const odd = byCode.get(tf.fleet.miners[1]!.id);
      expect(odd).toMatchObject({ code: 'INVALID_JOB', jobAttempts: 1 });
      expect(odd?.error?.message).toMatch(/no running worker has credentials profile "site2"/);
      expect(byCode.get(tf.fleet.miners[0]!.id)?.code).toBe('OK');
    } finally {
      await plain.close();
      await queue.close();
    }
  });

  it('when every worker of that configuration stops, its queue goes to the others: one that can runs them, one that cannot hands them on again', async () => {
    const prefix = uniquePrefix('hand');
    const { queue, store, record, announced, plain, theirs } = await handedOnRun(prefix);
    // Only "site2": a third configuration that can do the jobs waiting in the stopped one's queue.
    const site2Only = await worker(prefix, { site2: simCreds });
    try {
      await announced.stop();
      await waitForRun(store, record.runId, record.total, { intervalMs: 50, signal: AbortSignal.timeout(20_000) });
      const outcomes = await store.getOutcomes(record.runId);
      expect(outcomes.map((o) => `${o.minerId} ${o.code}`).sort()).toEqual(tf.fleet.miners.map((m) => `${m.id} OK`).sort());
      // Nothing left there (a job's outcome is stored a moment before the job completes).
      await until(async () => Object.values(await theirs.getJobCounts('waiting', 'active', 'delayed')).every((n) => n === 0), 5_000, 50);
    } finally {
      await site2Only.close();
      await plain.close();
      await queue.close();
    }
  });

  it('cancel drops the handed-on jobs too, and each of their miners gets CANCELLED', async () => {
    const prefix = uniquePrefix('hand');
    const { queue, store, record, announced, plain } = await handedOnRun(prefix);
    try {
      const r = await cancelRun(queue, store, record.runId);
      expect(r).toMatchObject({ cancelled: COUNT / 2, done: COUNT, total: COUNT });
      const cancelled = (await store.getOutcomes(record.runId)).filter((o) => o.code === 'CANCELLED');
      expect(cancelled.map((o) => o.minerId).sort()).toEqual(tf.fleet.miners.filter((_, i) => i % 2).map((m) => m.id).sort());
    } finally {
      await plain.close();
      await announced.stop();
      await queue.close();
    }
  });
});

describe('a handed-on job, found again', () => {
  it('a copy whose miner has an outcome already (its earlier pass ended) never reaches the miner', async () => {
    const prefix = uniquePrefix('hand');
    const main = new Queue(QUEUE_NAME, { connection: redis, prefix });
    const store = new RunStore(redis, prefix);
    const full = await worker(prefix, { default: simCreds, site2: simCreds });
    const m = tf.fleet.miners[3]!;
    const target = { minerId: m.id, host: m.host, port: m.port, site: 'site-a', tags: [], credentials: 'site2' };
    try {
      const before = await tf.fleet.callCounts(m.id);
      await store.writeOutcome({ runId: 'r1', minerId: m.id, host: m.host, port: m.port, operation: 'poll', status: 'ok', code: 'OK', attempts: 1, jobAttempts: 1, durationMs: 5, finishedAt: new Date().toISOString(), transport: 'plaintext' });
      await redis.sadd(`${prefix}:hand-on-queues`, signatureOf(FULL)); // its workers consume it from now
      const theirs = handOnQueue(main, signatureOf(FULL));
      await theirs.add('poll', { runId: 'r1', operation: 'poll', target, params: {}, prior: { attempts: 0 } }, { jobId: `r1.${m.id}` });
      await until(async () => (await theirs.getJobCounts('completed')).completed === 1);
      expect((await theirs.getJob(`r1.${m.id}`))?.returnvalue).toEqual({ code: 'OK', skipped: true });
      expect(await tf.fleet.callCounts(m.id)).toEqual(before);
    } finally {
      await full.close();
      await main.close();
    }
  });

  it('a delayed one is woken where it is; one whose copy is live is known to have been handed on, not the other way round', async () => {
    const prefix = uniquePrefix('hand');
    const main = new Queue(QUEUE_NAME, { connection: redis, prefix });
    await redis.sadd(`${prefix}:hand-on-queues`, 'abc');
    const other = handOnQueue(main, 'abc');
    try {
      await other.add('poll', { runId: 'r', prior: { attempts: 0, from: QUEUE_NAME } }, { jobId: 'r.m1', delay: 60_000 });
      expect(await promoteJobs(main, ['r.m1'])).toBe(1);
      const copy = (await other.getJob('r.m1'))!;
      expect(await copy.getState()).toBe('waiting');

      // The original, delivered again while its copy waits, was handed on; the copy, while the
      // original is still there (not completed yet), was not: each would otherwise end the other.
      const original = await main.add('poll', { runId: 'r' }, { jobId: 'r.m1' });
      expect(await handedOnBefore(main, original)).toBe(true);
      expect(await handedOnBefore(main, copy)).toBe(false);
      await other.remove('r.m1');
      expect(await handedOnBefore(main, original)).toBe(false);
    } finally {
      await other.close();
      await main.close();
    }
  });

  it('an empty hand-on queue is unlisted, one a copy reached meanwhile stays listed, and a hand-on lists its queue again after adding the copy', async () => {
    const prefix = uniquePrefix('hand');
    const main = new Queue(QUEUE_NAME, { connection: redis, prefix });
    const k = keys(prefix);
    const other = handOnQueue(main, 'abc');
    const listed = async () => (await redis.smembers(k.handOnQueues)).includes('abc');
    try {
      await redis.sadd(k.handOnQueues, 'abc');
      await other.add('poll', { runId: 'r', prior: { attempts: 0, from: QUEUE_NAME } }, { jobId: 'r.m1', delay: 60_000 });
      expect(await forgetIfEmpty(redis, k, main, 'abc')).toBe(false);
      expect(await listed()).toBe(true);
      await other.remove('r.m1');
      expect(await forgetIfEmpty(redis, k, main, 'abc')).toBe(true);
      expect(await listed()).toBe(false);

      // The queue unlisted between the hand-on's first SADD and its add (a watcher had found it empty).
      const original = await main.add('poll', { runId: 'r' }, { jobId: 'r.m2' });
      const unlistOnAdd = new Redis(redisUrl());
      const addJob = other.add.bind(other);
      other.add = async (...args: Parameters<Queue['add']>) => {
        await unlistOnAdd.srem(k.handOnQueues, 'abc');
        return addJob(...args);
      };
      try {
        expect(await handOn(redis, k, main, original, { runId: 'r' } as JobData, 'abc')).toBe(true);
      } finally {
        other.add = addJob;
        unlistOnAdd.disconnect();
      }
      expect(await other.getJob('r.m2')).toBeDefined();
      expect(await listed()).toBe(true);
    } finally {
      await other.close();
      await main.close();
    }
  });
});

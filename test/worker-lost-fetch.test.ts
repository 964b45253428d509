// A reply lost with the worker's Redis connection: the job that Redis fetched for the worker in it
// goes back to the queue at once (lost-fetches.ts), not after its lock runs out and a stall check.
import { DelayedError, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { QUEUE_NAME } from '../src/fleet/keys.js';
import { openQueue } from '../src/fleet/queue.js';
import { RunStore } from '../src/fleet/run-store.js';
import { enqueueRun } from '../src/producer/enqueue.js';
import { startWorker } from '../src/workers/worker.js';
import { watchLostFetches } from '../src/workers/lost-fetches.js';
import { FAST_CORE, startTestFleet, type TestFleet } from './helpers/fleet.js';
import { redisUrl, startHoldingProxy, uniquePrefix } from './helpers/redis.js';
import { until } from './helpers/until.js';

const COUNT = 12;
let tf: TestFleet;
let redis: Redis;

beforeAll(async () => {
  // Every reply takes 100 ms: jobs are still queued when the first one ends.
  tf = await startTestFleet(COUNT, '127.51.0.1', () => ({ slow: { latencyMs: 100 } }));
  redis = new Redis(redisUrl(), { maxRetriesPerRequest: null });
});
afterAll(async () => {
  redis.disconnect();
  await tf.fleet.close();
});

describe('a reply lost with the connection', () => {
  it('the job Redis fetched for the worker in it goes back to the queue at once: the run ends long before the lock would run out', async () => {
    const prefix = uniquePrefix('lost-fetch');
    // The first job's end (BullMQ's moveToFinished, which also fetches the next job) runs in Redis,
    // and its reply never arrives: the connection is cut under it.
    const proxy = await startHoldingProxy(Number(new URL(redisUrl()).port), `${prefix}:${QUEUE_NAME}:completed`);
    const lines: string[] = [];
    const worker = await startWorker({ redisUrl: proxy.url, prefix, threads: 0, concurrency: 3, consumers: 2, credentials: tf.credentials, coreOptions: FAST_CORE });
    const queue = openQueue(QUEUE_NAME, redis, prefix);
    const store = new RunStore(redis, prefix);
    const logged = vi.spyOn(console, 'error').mockImplementation((line: unknown) => void lines.push(String(line)));
    try {
      const record = await enqueueRun(queue, store, tf.inventory, { operation: 'poll' });
      await proxy.seen;
      await new Promise((r) => setTimeout(r, 300));
      proxy.cut();
      const cutAt = Date.now();
      // BullMQ's lock is 30 s here: without the look, the fetched job waits at least that long.
      await until(async () => (await store.getCounts(record.runId)).done >= COUNT, 20_000);
      expect(Date.now() - cutAt).toBeLessThan(15_000);
      expect((await store.getCounts(record.runId)).counts).toEqual({ OK: COUNT });
      expect((await store.getOutcomes(record.runId)).length).toBe(COUNT);
      // The replies held were those of every job in flight (the connection's): each fetched one more.
      const back = /(\d+) jobs? Redis gave this worker in a reply lost with the connection went back to the queue/.exec(lines.join('\n'));
      expect(Number(back?.[1])).toBeGreaterThanOrEqual(1);
    } finally {
      logged.mockRestore();
      await worker.close();
      await queue.obliterate({ force: true });
      await queue.close();
      await proxy.close();
    }
  });
});

describe('the jobs a consumer holds as received', () => {
  it('stay bounded when its processor delays them (no event ends those), and never drop a job in flight: a look then moves none', async () => {
    const prefix = uniquePrefix('lost-fetch-bound');
    const queue = new Queue('delays', { connection: redis, prefix });
    const conn = new Redis(redisUrl(), { maxRetriesPerRequest: null });
    const runs = new Map<string, number>();
    const taken: string[] = [];
    let most = 0;
    // Each job is delayed on its first run (as a parked or handed-back job is), then completes. Jobs
    // 105–108 take 2 s first: the 109th received (108) is past the bound (2 × 4 + 100), so the entries
    // are pruned while those four are in flight, and a look then finds them active under this
    // consumer's locks at both of its reads.
    const w = new Worker(
      'delays',
      async (job, token) => {
        const n = Number(String(job.id).slice(1));
        runs.set(String(job.id), (runs.get(String(job.id)) ?? 0) + 1);
        most = Math.max(most, watch.tracked(w));
        if (job.data.delayed) return;
        if (n >= 105 && n <= 108) {
          if (n === 108) setTimeout(() => watch.look('delays'), 100);
          await new Promise((r) => setTimeout(r, 2_000));
        }
        await job.updateData({ delayed: true });
        // Refused (its lock gone) if a look had moved the job from under this run.
        await job.moveToDelayed(Date.now() + 1_000, token).catch((err: unknown) => void taken.push(`${job.id}: ${String(err)}`));
        throw new DelayedError();
      },
      { connection: conn, prefix, concurrency: 4 },
    );
    const watch = watchLostFetches(() => undefined);
    watch.add(w, conn);
    try {
      await queue.addBulk(Array.from({ length: 300 }, (_, i) => ({ name: 'j', data: { delayed: false }, opts: { jobId: `j${i}` } })));
      await until(async () => (await queue.getCompletedCount()) === 300, 30_000);
      // Not all 300 held (as without the pruning): about the bound at most.
      expect(most).toBeLessThan(150);
      // The look moved none of the four in flight: each was delayed by its own run, then completed.
      expect(taken).toEqual([]);
      expect(runs.size).toBe(300);
    } finally {
      watch.stop();
      await w.close();
      await queue.obliterate({ force: true });
      await queue.close();
      conn.disconnect();
    }
  });
});

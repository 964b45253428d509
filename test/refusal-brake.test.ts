// A worker whose Redis refuses writes (full, cannot save, a replica) stops taking jobs for a while
// instead of asking again at once, and takes them again once Redis takes writes.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { RunStore } from '../src/fleet/run-store.js';
import type { Outcome } from '../src/fleet/outcome.js';
import { enqueueRun } from '../src/producer/enqueue.js';
import { redisRefusal } from '../src/redis/durability.js';
import { startWorker } from '../src/workers/worker.js';
import { refusalBrake } from '../src/workers/refusal-brake.js';
import { writeOutcomeThroughRefusals } from '../src/workers/outcome-write.js';
import { FAST_CORE, startTestFleet, type TestFleet } from './helpers/fleet.js';
import { withOwnRedis } from './helpers/own-redis.js';
import { until } from './helpers/until.js';

describe('the refusal brake', () => {
  const consumer = () => ({ pause: vi.fn(async () => undefined), resume: vi.fn() });
  const refused = new Error("OOM command not allowed when used memory > 'maxmemory'.");

  it('holds on a refusal, 1 s first and twice as long each time Redis refuses again soon after, up to 30 s; other errors pass', () => {
    vi.useFakeTimers();
    try {
      const c = consumer();
      const holds: number[] = [];
      const brake = refusalBrake(c, { onHold: (ms) => holds.push(ms), now: () => Date.now() });
      expect(brake.onError(new Error('Missing lock for job 1. moveToFinished'))).toBe(false);
      expect(c.pause).not.toHaveBeenCalled();
      expect(brake.onError(refused)).toBe(true);
      expect(c.pause).toHaveBeenCalledWith(true); // jobs in flight go on
      expect(brake.held()).toBe(true);
      expect(brake.onError(refused)).toBe(true); // while held: no new hold
      expect(c.pause).toHaveBeenCalledTimes(1);
      for (let i = 0; i < 7; i++) {
        vi.advanceTimersByTime(holds.at(-1)!);
        expect(brake.held()).toBe(false);
        brake.onError(refused); // refused again right after the resume
      }
      expect(c.resume).toHaveBeenCalledTimes(7);
      expect(holds).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
      // Refused again long after the last hold ended: a new episode starts at 1 s.
      vi.advanceTimersByTime(30_000);
      vi.advanceTimersByTime(120_000);
      brake.onError(new Error('MISCONF Errors writing to the AOF file: No space left on device'));
      expect(holds.at(-1)).toBe(1_000);
      // Stopped (the worker closes): no resume after.
      brake.stop();
      vi.advanceTimersByTime(5_000);
      expect(c.resume).toHaveBeenCalledTimes(8);
    } finally {
      vi.useRealTimers();
    }
  });

  it('knows a refusal as Redis says it, bare or inside a script error', () => {
    expect(redisRefusal("OOM command not allowed when used memory > 'maxmemory'.")).toBe('OOM');
    expect(redisRefusal('MISCONF Errors writing to the AOF file: No space left on device script: 2998…, on @user_script:583.')).toBe('MISCONF');
    expect(redisRefusal("READONLY You can't write against a read only replica.")).toBe('READONLY');
    expect(redisRefusal("ERR Error running script (call to f_d5e8…): @user_script:1: @user_script: 1: -OOM command not allowed when used memory > 'maxmemory'.")).toBe('OOM');
    expect(redisRefusal("NOPERM this user has no permissions to access one of the keys used as arguments")).toBe('NOPERM');
    expect(redisRefusal('Missing lock for job OOMKILLED. moveToFinished')).toBeUndefined();
    expect(redisRefusal('connect ECONNREFUSED 127.0.0.1:6379')).toBeUndefined();
  });
});

describe("a job's outcome", () => {
  it('refused by a full Redis is written once Redis has room, not failed (its job would run again a minute later); other errors and a long refusal fail it', async () => {
    await withOwnRedis('outcome', async ({ redis, queue }) => {
      const store = new RunStore(redis, queue.opts.prefix!);
      const outcome = (minerId: string): Outcome => ({ runId: 'r1', minerId, host: '127.0.0.1', port: 50051, operation: 'poll', status: 'ok', code: 'OK', attempts: 1, jobAttempts: 1, durationMs: 1, finishedAt: new Date().toISOString(), transport: 'plaintext' });
      await redis.config('SET', 'maxmemory', '1');
      try {
        const writing = writeOutcomeThroughRefusals(store, outcome('m1'));
        await new Promise((r) => setTimeout(r, 1_500));
        expect(await store.getOutcome('r1', 'm1')).toBeUndefined(); // refused so far
        await redis.config('SET', 'maxmemory', '0');
        expect(await writing).toBe(true);
        expect((await store.getCounts('r1')).counts).toEqual({ OK: 1 });
        await redis.config('SET', 'maxmemory', '1');
        await expect(writeOutcomeThroughRefusals(store, outcome('m2'), 600)).rejects.toThrow(/OOM/);
      } finally {
        await redis.config('SET', 'maxmemory', '0');
      }
    });
  });
});

const PATIENT_CORE = { ...FAST_CORE, connectTimeoutMs: 5_000, readTimeoutMs: 5_000, loginTimeoutMs: 5_000, callBudgetMs: 20_000 };

describe('a worker whose Redis fills up under it', () => {
  let tf: TestFleet;
  // Slow miners: the worker is still busy with the run when Redis fills up.
  beforeAll(async () => void (tf = await startTestFleet(40, '127.38.0.1', () => ({ slow: { latencyMs: 150 } }))));
  afterAll(() => tf.fleet.close());

  it('stops taking jobs for a while instead of asking again at once, and works every job once Redis has room', async () => {
    await withOwnRedis('brake', async ({ server, redis, queue }) => {
      const prefix = queue.opts.prefix!;
      const store = new RunStore(redis, prefix);
      // Attempts to spare: BullMQ's scripts move a job on while Redis refuses its outcome (they free
      // memory first, and Redis refuses a script only at a command that adds data, unless it has
      // written already), so each refused outcome can use one. A job out of attempts while Redis still
      // refuses would lose its outcome here (a kept run's lost-jobs check queues it again; this run has
      // none). And deadlines to spare: this test is about Redis, not slow miners (under load, 800 ms
      // reads timed out: 31 and 35 of 40 miners MINER_TIMEOUT in two runs beside three CPU hogs).
      const run = await enqueueRun(queue, store, tf.inventory, { operation: 'poll', jobAttempts: 20, jobBackoffMs: 200 });
      const lines: string[] = [];
      const spy = vi.spyOn(console, 'error').mockImplementation((line: unknown) => void lines.push(String(line)));
      // Slots to spare: its consumers keep fetching (a worker with every slot busy fetches nothing).
      // Outcomes Redis refuses fail their jobs at once (they wait 20 s for room otherwise: outcome-write.ts),
      // so BullMQ's own calls meet the refusals; such a job runs again after its backoff (above), or, when
      // BullMQ's own call was refused too, once its lock (5 s here) expires.
      const worker = await startWorker({ redisUrl: server.url, prefix, threads: 0, concurrency: 50, credentials: tf.credentials, coreOptions: PATIENT_CORE, outcomeRefusedWaitMs: 0, lockDurationMs: 5_000, stalledIntervalMs: 2_500 });
      const refusals = async () => Number(/errorstat_OOM:count=(\d+)/.exec(await redis.info('errorstats'))?.[1] ?? 0);
      try {
        await until(async () => (await store.getCounts(run.runId)).done >= 2, 20_000, 20);
        await redis.config('SET', 'maxmemory', '1'); // full: every write refused (OOM)
        try {
          await until(async () => (await refusals()) > 0, 10_000, 20);
          const before = await refusals();
          await new Promise((r) => setTimeout(r, 3_000));
          // Without the brake: thousands (2,632 measured), its consumers' free slots fetching again at once.
          expect((await refusals()) - before).toBeLessThan(100);
          expect(lines.filter((l) => l.startsWith('worker: Redis refuses writes'))).toEqual([
            "worker: Redis refuses writes (OOM command not allowed when used memory > 'maxmemory'.): taking no new jobs for 1 s, then trying again, longer while it refuses (jobs in flight end once it takes writes; none is lost). Free or add Redis memory (maxmemory).",
          ]);
          expect(lines.filter((l) => l.includes('OOM') && !l.startsWith('worker: Redis refuses writes') && !l.startsWith('worker: a failed job'))).toEqual([]);
        } finally {
          await redis.config('SET', 'maxmemory', '0');
        }
        // Redis has room again: every miner gets its one outcome (the brake holds at most 4 s by now).
        await until(async () => (await store.getCounts(run.runId)).done === 40, 60_000, 50).catch(async (err: Error) => {
          // What a hang left where: the run's counts, BullMQ's jobs by state, and what the worker said.
          const jobs = await queue.getJobCounts('active', 'waiting', 'prioritized', 'delayed', 'completed', 'failed');
          throw new Error(`${err.message}: ${JSON.stringify((await store.getCounts(run.runId)).counts)}; jobs ${JSON.stringify(jobs)}; the worker said:\n${lines.slice(-30).join('\n')}`);
        });
        const { counts } = await store.getCounts(run.runId);
        expect(counts).toEqual({ OK: 40 });
      } finally {
        await worker.close();
        spy.mockRestore();
      }
    });
  }, 90_000);
});

// Jobs Redis lost (its host crashed before the AOF was synced, a failover to a replica behind): the
// runs they were of still end, every miner with one outcome, instead of waiting for them for ever.
import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { jobId, QUEUE_NAME } from '../src/fleet/keys.js';
import { RunStore } from '../src/fleet/run-store.js';
import { BACKGROUND_PRIORITY, enqueueRun, runJobs } from '../src/producer/enqueue.js';
import { requeueLost, RunVanishedError } from '../src/producer/lost-jobs.js';
import { cancelRun } from '../src/producer/cancel.js';
import { enqueueOnly, runLocal } from '../src/producer/run-local.js';
import { CONTROL_QUEUE } from '../src/rollout/control.js';
import { createKeeper, ENQUEUE_GRACE_MS, leaveToWorkers } from '../src/producer/run-keeper.js';
import { redisNowMs } from '../src/redis/clock.js';
import { getSchedule, tickKey } from '../src/rollout/schedules.js';
import { createScheduleProcessor } from '../src/rollout/schedule-ticks.js';
import { openQueue } from '../src/fleet/queue.js';
import { handOnQueueName } from '../src/fleet/hand-on-queues.js';
import { startWorker } from '../src/workers/worker.js';
import { runCli, startCliFleet, type CliFleet, type FleetFiles } from './helpers/cli.js';
import { appliedWritesPerMiner, FAST_CORE, powerTargetPlan, type TestFleet } from './helpers/fleet.js';
import { startRollout } from '../src/rollout/create.js';
import { waveRunId } from '../src/rollout/store.js';
import { waitForRollout } from '../src/rollout/wait.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';
import { until } from './helpers/until.js';

const COUNT = 8;
let cf: CliFleet;
let tf: TestFleet;
let redis: Redis;
let files: FleetFiles;

beforeAll(async () => {
  // Each reply takes 100 ms: a run lasts long enough for its queued jobs to be taken away.
  ({ tf, redis, files } = cf = await startCliFleet(COUNT, '127.33.0.1', () => ({ slow: { latencyMs: 100 } }), { maxRetriesPerRequest: null }));
});
afterAll(() => cf.close());

/** Removes `n` of the run's queued jobs, as a Redis that lost them would have: returns their miners. */
async function loseQueuedJobs(queue: Queue, runId: string, n: number): Promise<string[]> {
  // The last in line: the worker takes the first ones meanwhile.
  const queued = (await queue.getJobs(['prioritized', 'waiting']))
    .filter((j) => j.data.runId === runId)
    .sort((a, b) => String(b.data.target.minerId).localeCompare(String(a.data.target.minerId)))
    .slice(0, n);
  for (const j of queued) await j.remove();
  return queued.map((j) => String(j.data.target.minerId));
}

/** `body` on a prefix of its own, with its run queue, control queue and run store; the queues are emptied and closed after, whatever happens. */
async function withRunQueue(name: string, body: (r: { prefix: string; queue: Queue; control: Queue; store: RunStore }) => Promise<void>): Promise<void> {
  const prefix = uniquePrefix(name);
  const queue = openQueue(QUEUE_NAME, redis, prefix);
  const control = openQueue(CONTROL_QUEUE, redis, prefix);
  try {
    await body({ prefix, queue, control, store: new RunStore(redis, prefix) });
  } finally {
    for (const q of [queue, control]) {
      await q.obliterate({ force: true });
      await q.close();
    }
  }
}

describe('requeueLost', () => {
  it('adds again the jobs of miners with neither an outcome nor a job, as they were, and nothing else', () =>
    withRunQueue('lost', async ({ prefix, queue, store }) => {
      const handOn = openQueue(handOnQueueName('abc'), redis, prefix);
      try {
        const opts = { operation: 'poll' as const, priority: BACKGROUND_PRIORITY, timeoutMs: 4_000 };
        const record = await enqueueRun(queue, store, tf.inventory, opts);
        const [done, ...targets] = tf.inventory.targets;
        // One miner finished (its outcome written, its job then deleted as finished jobs are); three lost.
        await store.writeOutcome({ runId: record.runId, minerId: done!.minerId, host: done!.host, port: done!.port, operation: 'poll', status: 'ok', code: 'OK', attempts: 1, jobAttempts: 1, durationMs: 1, finishedAt: new Date().toISOString(), transport: 'plaintext' });
        await queue.remove(jobId(record.runId, done!.minerId));
        const lost = targets.slice(0, 3).map((t) => t.minerId);
        for (const m of lost) await queue.remove(jobId(record.runId, m));
        // One handed on to the workers that can do it: its job is in their queue now, not lost.
        const handed = targets[3]!.minerId;
        await redis.sadd(store.k.handOnQueues, 'abc');
        await handOn.add('poll', (await queue.getJob(jobId(record.runId, handed)))!.data, { jobId: jobId(record.runId, handed) });
        await queue.remove(jobId(record.runId, handed));

        expect(await requeueLost(queue, store, record.runId, tf.inventory, opts)).toBe(3);
        expect(await queue.getJob(jobId(record.runId, handed))).toBeUndefined();
        for (const m of lost) {
          const job = await queue.getJob(jobId(record.runId, m));
          expect(job?.data.target.minerId).toBe(m);
          expect(job?.opts.priority).toBe(BACKGROUND_PRIORITY);
          expect(job?.data.timeoutMs).toBe(4_000);
        }
        expect(await queue.getJob(jobId(record.runId, done!.minerId))).toBeUndefined(); // done: not again
        expect(await queue.getJobCountByTypes('prioritized')).toBe(COUNT - 2);
        expect(await requeueLost(queue, store, record.runId, tf.inventory, opts)).toBe(0);

        // Not for another inventory (a schedule added again under its id), nor a cancelled run.
        await queue.remove(jobId(record.runId, lost[0]!));
        expect(await requeueLost(queue, store, record.runId, { ...tf.inventory, digest: 'other' }, opts)).toBe(0);
        await store.markCancelled(record.runId);
        expect(await requeueLost(queue, store, record.runId, tf.inventory, opts)).toBe(0);
        // A run whose record is gone (Redis flushed, or replaced) says so.
        await redis.del(store.k.run(record.runId));
        await expect(requeueLost(queue, store, record.runId, tf.inventory, opts)).rejects.toThrow(RunVanishedError);
      } finally {
        await handOn.obliterate({ force: true });
        await handOn.close();
      }
    }));
});

describe('a job that finished without its outcome', () => {
  // Redis came back without its last second, which held the outcome, and the job's worker, still
  // running, then ended the job on it: the job is finished but its miner has no outcome.
  it('is queued again, its finished job replaced; a finished job with its outcome is not', () =>
    withRunQueue('finished', async ({ prefix, queue, store }) => {
      const opts = { operation: 'poll' as const, priority: BACKGROUND_PRIORITY };
      const record = await enqueueRun(queue, store, tf.inventory, opts);
      const [failed, ...completed] = tf.inventory.targets.map((t) => t.minerId);
      const worker = new Worker(QUEUE_NAME, async (job) => {
        if (job.data.target.minerId === failed) throw new UnrecoverableError('the outcome was written, then lost');
        return { code: 'OK' };
      }, { connection: redis, prefix, concurrency: COUNT });
      try {
        await until(async () => (await queue.getJobCountByTypes('completed', 'failed')) === COUNT, 10_000, 20);
      } finally {
        await worker.close();
      }
      // One of them finished in a hand-on queue (handed on, then done by the workers that could).
      const handed = completed[2]!;
      const handOn = openQueue(handOnQueueName('abc'), redis, prefix);
      const handOnWorker = new Worker(handOnQueueName('abc'), async () => ({ code: 'OK' }), { connection: redis, prefix });
      try {
        await redis.sadd(store.k.handOnQueues, 'abc');
        await handOn.add('poll', (await queue.getJob(jobId(record.runId, handed)))!.data, { jobId: jobId(record.runId, handed) });
        await queue.remove(jobId(record.runId, handed));
        await until(async () => (await handOn.getJobState(jobId(record.runId, handed))) === 'completed', 10_000, 20);
      } finally {
        await handOnWorker.close();
      }
      const withOutcome = completed.slice(3);
      for (const m of withOutcome) {
        const t = tf.inventory.targets.find((x) => x.minerId === m)!;
        await store.writeOutcome({ runId: record.runId, minerId: m, host: t.host, port: t.port, operation: 'poll', status: 'ok', code: 'OK', attempts: 1, jobAttempts: 1, durationMs: 1, finishedAt: new Date().toISOString(), transport: 'plaintext' });
      }
      expect(await requeueLost(queue, store, record.runId, tf.inventory, opts)).toBe(4);
      for (const m of [failed!, ...completed.slice(0, 3)]) expect(await queue.getJobState(jobId(record.runId, m))).toBe('prioritized');
      for (const m of withOutcome) expect(await queue.getJobState(jobId(record.runId, m))).toBe('completed');
      expect(await handOn.getJob(jobId(record.runId, handed))).toBeUndefined();
      expect(await requeueLost(queue, store, record.runId, tf.inventory, opts)).toBe(0);
      await handOn.obliterate({ force: true });
      await handOn.close();
    }));
});

describe('a poll left to the workers (--enqueue-only)', () => {
  it('whose queued jobs Redis lost still ends, every miner polled once: a worker queues them again; a cancelled one is let go', () =>
    withRunQueue('lostbg', async ({ prefix, queue, store }) => {
      const said = vi.spyOn(console, 'error');
      const left = { redisUrl: redisUrl(), prefix, inventory: tf.inventory, operation: 'poll' as const, credentials: tf.credentials, threads: 0, concurrency: 2, timeoutMs: 4_000 };
      const record = await enqueueOnly(left);
      const dropped = await enqueueOnly(left);
      try {
        expect(await redis.exists(store.k.kept(record.runId))).toBe(1);
        const lost = await loseQueuedJobs(queue, record.runId, 3);
        expect(lost).toHaveLength(3);
        await cancelRun(queue, store, dropped.runId);
        const worker = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 4, credentials: tf.credentials, coreOptions: FAST_CORE, stillCheckMs: 1_000 });
        try {
          await until(async () => (await store.getCounts(record.runId)).done >= COUNT, 30_000, 100);
          // The run ended: its next look lets it go (its kept miners deleted), as the cancelled one's first did.
          await until(async () => (await redis.exists(store.k.kept(record.runId), store.k.kept(dropped.runId))) === 0, 15_000, 100);
        } finally {
          await worker.close();
        }
        expect((await store.getCounts(record.runId)).counts).toEqual({ OK: COUNT });
        expect((await store.outcomeMinerIds(record.runId)).sort()).toEqual(tf.inventory.targets.map((t) => t.minerId).sort());
        for (const m of lost) expect((await queue.getJob(jobId(record.runId, m)))?.opts.priority).toBe(BACKGROUND_PRIORITY);
        expect((await store.getCounts(dropped.runId)).counts).toEqual({ CANCELLED: COUNT });
        expect(said.mock.calls.map((c) => String(c[0])).join('\n')).toContain(`worker: run ${record.runId}: 3 of its ${COUNT} miners had no outcome and no job still to run in Redis`);
      } finally {
        said.mockRestore();
      }
    }));
});

describe('the look at a poll left to the workers', () => {
  it('looks for lost jobs only after the run went still long enough: twice as long after each look that found none', () =>
    withRunQueue('keeplook', async ({ prefix, queue, control, store }) => {
      const record = await enqueueOnly({ redisUrl: redisUrl(), prefix, inventory: tf.inventory, operation: 'poll', credentials: tf.credentials, threads: 0, concurrency: 2 });
      await loseQueuedJobs(queue, record.runId, 2);
      const keep = createKeeper({ store, jobs: queue, control, stillCheckMs: 1_000, log: () => undefined });
      const queued = async () => (await queue.getJobs(['prioritized'])).length;
      const look = (seq: number, stillForMs: number, quiet: number) => keep({ data: { runId: record.runId, seq, still: { done: 0, sinceMs: Date.now() - stillForMs, quiet } } });
      // Still for 1.5 s, after a look that found none: the next is due at 2 s.
      await look(1, 1_500, 1);
      expect(await queued()).toBe(COUNT - 2);
      const next = await control.getJob(`${record.runId}.keep.2`);
      expect(next?.data.still).toMatchObject({ done: 0, quiet: 1 });
      expect(next?.opts.delay).toBe(500);
      await look(2, 2_500, 1);
      expect(await queued()).toBe(COUNT);
      expect((await control.getJob(`${record.runId}.keep.3`))?.data.still).toMatchObject({ done: 0, quiet: 0 });
      // Found none: twice as long before the next.
      await look(3, 2_500, 1);
      expect((await control.getJob(`${record.runId}.keep.4`))?.data.still).toMatchObject({ done: 0, quiet: 2 });
    }));
});

describe('an --enqueue-only run whose enqueue was cut off (its process died)', () => {
  it('is left alone while it may still be going in, then completed with the miners it never added', () =>
    withRunQueue('keepcut', async ({ queue, control, store }) => {
      const opts = { operation: 'poll' as const, priority: BACKGROUND_PRIORITY };
      const { record } = await store.createRun({ runId: 'run-cut', operation: 'poll', params: {}, inventoryFile: tf.inventory.file, inventoryDigest: tf.inventory.digest, createdAt: new Date().toISOString(), createdAtMs: Date.now(), total: COUNT });
      await leaveToWorkers(store, control, record, tf.inventory.targets, opts);
      await queue.addBulk(runJobs(record, tf.inventory.targets.slice(0, 3), opts));
      const first = await control.getJob(`${record.runId}.keep.0`);
      // Taken by Redis's clock, as every look's: hosts whose clocks disagree agree on it.
      expect(Math.abs(first!.data.leftAtMs - (await redisNowMs(redis)))).toBeLessThan(5_000);
      const keep = createKeeper({ store, jobs: queue, control, stillCheckMs: 1_000, log: () => undefined });
      const look = (seq: number, leftAtMs: number) => keep({ data: { runId: record.runId, seq, leftAtMs, still: { done: 0, sinceMs: Date.now() - 5_000, quiet: 0 } } });
      // Its record made a minute ago by a host whose clock is ahead: it was left to the workers just now.
      await redis.hset(store.k.run(record.runId), 'record', JSON.stringify({ ...record, createdAtMs: Date.now() - ENQUEUE_GRACE_MS - 1 }));
      await look(1, first!.data.leftAtMs);
      expect(await queue.count()).toBe(3);
      expect((await control.getJob(`${record.runId}.keep.2`))?.data.leftAtMs).toBe(first!.data.leftAtMs);
      // A minute on, with no mark that its jobs are all in: its enqueue is taken as cut off.
      await look(2, first!.data.leftAtMs - ENQUEUE_GRACE_MS - 1);
      expect((await queue.getJobs(['prioritized'])).map((j) => j.data.target.minerId).sort()).toEqual(tf.inventory.targets.map((t) => t.minerId).sort());
    }));
});

describe('cancel', () => {
  it('ends a poll left to workers whose jobs Redis lost: the run is cut to the miners it still holds', () =>
    withRunQueue('lostcancel', async ({ queue, store }) => {
      const record = await enqueueRun(queue, store, tf.inventory, { operation: 'poll', priority: BACKGROUND_PRIORITY });
      expect((await store.enqueueState(record.runId)).enqueued).toBe(true);
      await loseQueuedJobs(queue, record.runId, 2);
      const r = await cancelRun(queue, store, record.runId);
      expect(r).toMatchObject({ cancelled: COUNT - 2, neverEnqueued: 2, done: COUNT - 2, total: COUNT - 2 });
      expect((await store.getRun(record.runId))?.total).toBe(COUNT - 2);
    }));
});

describe('a foreground poll', () => {
  it('whose queued jobs Redis lost still ends, every miner polled once, and says so', () =>
    withRunQueue('lostfg', async ({ prefix, queue, store }) => {
      const said = vi.spyOn(process.stderr, 'write');
      try {
        const polling = runLocal({ redisUrl: redisUrl(), prefix, inventory: tf.inventory, operation: 'poll', credentials: tf.credentials, threads: 0, concurrency: 2, coreOptions: FAST_CORE, stillCheckMs: 1_000 });
        let runId = '';
        await until(async () => {
          const queued = await queue.getJobs(['prioritized']);
          runId = String(queued[0]?.data.runId ?? '');
          return queued.length >= COUNT - 2;
        }, 10_000, 20);
        const lost = await loseQueuedJobs(queue, runId, 3);
        expect(lost).toHaveLength(3);
        const { record, summary } = await polling;
        expect(record.runId).toBe(runId);
        expect(summary.done).toBe(COUNT);
        expect(summary.counts).toEqual({ OK: COUNT });
        expect((await store.outcomeMinerIds(runId)).sort()).toEqual(tf.inventory.targets.map((t) => t.minerId).sort());
        expect(said.mock.calls.map((c) => String(c[0])).join('')).toContain(`run ${runId}: 3 of its ${COUNT} miners had no outcome and no job still to run in Redis`);
      } finally {
        said.mockRestore();
      }
    }));

  it('whose run Redis lost altogether (flushed, a failover to an empty replica) ends with an error saying so, instead of waiting for ever', () =>
    withRunQueue('gonefg', async ({ prefix, queue }) => {
      const polling = runLocal({ redisUrl: redisUrl(), prefix, inventory: tf.inventory, operation: 'poll', credentials: tf.credentials, threads: 0, concurrency: 2, coreOptions: FAST_CORE, stillCheckMs: 1_000 });
      await until(async () => (await queue.getJobs(['prioritized'])).length >= COUNT - 2, 10_000, 20);
      // Every key of this prefix goes, as a flush would take them (other tests' keys stay).
      for (const key of await redis.keys(`${prefix}:*`)) await redis.del(key);
      await expect(polling).rejects.toThrow(/is gone from Redis \(its record, outcomes and jobs\).*poll again/);
    }));
});

describe('a poll schedule', () => {
  it("whose last run lost jobs queues them again at its next tick, so the run ends and ticks start runs again (they were skipped for ever)", () =>
    withRunQueue('lostsched', async ({ prefix, queue, store }) => {
      const added = await runCli(['schedule', 'add', 'poll', '--inventory', files.inventory, '--every', '1s', '--id', 'farm', '--redis', redisUrl(), '--prefix', prefix]);
      expect(added.code).toBe(0);
      const def = (await getSchedule(redis, 'farm', prefix))!;
      // The schedule's last run, two of whose jobs Redis lost before any worker took them.
      const runId = 'farm-1';
      await enqueueRun(queue, store, { file: def.inventoryFile, targets: def.targets, digest: def.inventoryDigest }, { operation: 'poll', runId, series: 'farm', priority: BACKGROUND_PRIORITY });
      await redis.hset(tickKey(prefix, 'farm'), 'last', runId);
      const lost = await loseQueuedJobs(queue, runId, 2);
      const said = vi.spyOn(console, 'error');
      const w = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 8, credentials: tf.credentials, coreOptions: FAST_CORE });
      try {
        await until(async () => (await store.getCounts(runId)).done === COUNT, 15_000);
        expect((await store.getCounts(runId)).counts).toEqual({ OK: COUNT });
        expect(await store.outcomeMinerIds(runId)).toEqual(expect.arrayContaining(lost));
        // One tick finds the lost jobs and queues them again. A tick after it may still find them to go
        // (running) and skip without that, and the schedule keeps only its last skip's reason: every
        // skip is in the worker's log.
        const skips = said.mock.calls.map((c) => String(c[0])).filter((l) => l.includes('schedule farm: tick skipped'));
        expect(skips.join('\n')).toMatch(/run farm-1 has \d+ of 8 miners to go; 2 of its 8 miners had no outcome and no job still to run in Redis.*queued again/);
        expect(await redis.hget(tickKey(prefix, 'farm'), 'skippedReason')).toMatch(/^run farm-1 has \d+ of 8 miners to go/);
        // And the ticks after it start runs again.
        await until(async () => (await store.listRuns(20)).some((r) => r.runId !== runId && r.runId.startsWith('farm-')), 10_000);
      } finally {
        await runCli(['schedule', 'remove', 'farm', '--redis', redisUrl(), '--prefix', prefix]);
        await w.close();
        said.mockRestore();
      }
    }));

  it('whose tick\'s run lost jobs and that was then removed: its run still ends, a worker queues them again (no tick would)', () =>
    withRunQueue('lostschedrm', async ({ prefix, queue, control, store }) => {
      const cli = (args: string[]) => runCli([...args, '--redis', redisUrl(), '--prefix', prefix]);
      // A cron that does not fire during the test: its one tick is the test's.
      expect((await cli(['schedule', 'add', 'poll', '--inventory', files.inventory, '--cron', '0 0 1 1 *', '--id', 'farm'])).code).toBe(0);
      const ms = Date.now();
      const tick = createScheduleProcessor({ redis, prefix, jobs: queue, control });
      expect(await tick({ id: `repeat:farm:${ms}`, data: { scheduleId: 'farm' }, timestamp: ms } as Job<{ scheduleId: string }>)).toEqual({ started: `farm-${ms}` });
      const runId = `farm-${ms}`;
      expect(await redis.exists(store.k.kept(runId))).toBe(1);
      const lost = await loseQueuedJobs(queue, runId, 2);
      expect(lost).toHaveLength(2);
      expect((await cli(['schedule', 'remove', 'farm'])).code).toBe(0);
      const said = vi.spyOn(console, 'error');
      const w = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 8, credentials: tf.credentials, coreOptions: FAST_CORE, stillCheckMs: 1_000 });
      try {
        await until(async () => (await store.getCounts(runId)).done === COUNT, 30_000, 100);
        expect((await store.getCounts(runId)).counts).toEqual({ OK: COUNT });
        expect((await store.outcomeMinerIds(runId)).sort()).toEqual(tf.inventory.targets.map((t) => t.minerId).sort());
        expect(said.mock.calls.map((c) => String(c[0])).join('\n')).toContain(`worker: run ${runId}: 2 of its ${COUNT} miners had no outcome and no job still to run in Redis`);
        await until(async () => (await redis.exists(store.k.kept(runId))) === 0, 15_000, 100);
      } finally {
        said.mockRestore();
        await w.close();
      }
    }));
});

describe('a rollout', () => {
  it("whose wave's queued change jobs Redis lost queues them again once the wave stands still: it completes, every miner changed once", () =>
    withRunQueue('lostroll', async ({ prefix, queue }) => {
      const w = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 1, credentials: tf.credentials, coreOptions: FAST_CORE, stillCheckMs: 2_000 });
      const to2610 = (r: unknown) => (r as { powerTarget: { watt: number } }).powerTarget.watt === 2610;
      try {
        const rec = await startRollout(redis, powerTargetPlan(tf, 2610), prefix);
        const runId = waveRunId(rec.rolloutId, 0);
        await until(async () => (await queue.getJobs(['waiting'])).filter((j) => j.data.runId === runId).length >= COUNT - 2, 10_000, 20);
        expect(await loseQueuedJobs(queue, runId, 2)).toHaveLength(2);
        const report = await waitForRollout(redis, rec.rolloutId, prefix);
        expect(report.state).toBe('completed');
        expect(report.counts).toEqual({ OK: COUNT });
        const writes = await appliedWritesPerMiner(tf.fleet, 'SetPowerTarget', to2610);
        expect([...writes.values()]).toEqual(tf.inventory.targets.map(() => 1));
      } finally {
        await w.close();
      }
    }), 40_000);
});

// A rollout paused mid-wave: its queued miner jobs are held, each looking at the rollout again only
// after as long as the pause has lasted (not every second: a 100,000-miner wave paused for the night
// would keep Redis and the workers busy cycling them), and resume or abort releases them at once.
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAME } from '../src/fleet/keys.js';
import { RunStore } from '../src/fleet/run-store.js';
import { changeRolloutState, rolloutReport, startRollout, type RolloutPlan } from '../src/rollout/create.js';
import { waitForRollout } from '../src/rollout/wait.js';
import { PAUSED_RECHECK_MAX_MS, pausedRecheckMs } from '../src/workers/processor.js';
import { startWorker } from '../src/workers/worker.js';
import { FAST_CORE, appliedWritesPerMiner, powerTargetPlan, type TestFleet, startRedisFleet, type RedisFleet } from './helpers/fleet.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';
import { until } from './helpers/until.js';

const COUNT = 40;
let tf: TestFleet;
let redis: Redis;
let rf: RedisFleet;
beforeAll(async () => {
  // Every reply takes 150 ms: a wave of 40 at 4 at a time takes seconds, long enough to pause it.
  ({ tf, redis } = rf = await startRedisFleet(COUNT, '127.35.0.1', () => ({ slow: { latencyMs: 150 } })));
});
afterAll(() => rf.close());

const plan = (watts: number): RolloutPlan => powerTargetPlan(tf, watts);

/** The rollout's miner jobs waiting out a delay, with their delays (ms). */
async function held(queue: Queue, rolloutId: string): Promise<number[]> {
  return (await queue.getDelayed()).filter((j) => String(j.id).startsWith(`${rolloutId}-w`)).map((j) => j.delay);
}

/**
 * Starts a rollout at `watts` and pauses it once its first miner is done, as if the pause had begun an
 * hour ago (a job that looks now waits the longest).
 */
async function pausedMidWave(prefix: string, watts: number) {
  const rec = await startRollout(redis, plan(watts), prefix);
  await until(async () => ((await rolloutReport(redis, rec.rolloutId, prefix))?.counts['OK'] ?? 0) >= 1, 30_000, 20);
  await changeRolloutState(redis, rec.rolloutId, 'pause', 'test', prefix);
  await redis.hset(`${prefix}:rollout:${rec.rolloutId}:state`, 'updatedAt', new Date(Date.now() - 3_600_000).toISOString());
  return rec;
}

describe('a rollout paused mid-wave', () => {
  it('holds its queued miners as long as the pause has lasted; resume releases them at once, each miner written once', async () => {
    const prefix = uniquePrefix('hold');
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
    const worker = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 4, credentials: tf.credentials, coreOptions: FAST_CORE });
    try {
      const rec = await pausedMidWave(prefix, 2150);
      const done = async () => (await rolloutReport(redis, rec.rolloutId, prefix))?.counts['OK'] ?? 0;
      // Jobs held before that come round once more (1-2 s), then all are held for 10-20 minutes.
      await until(async () => (await held(queue, rec.rolloutId)).filter((d) => d >= PAUSED_RECHECK_MAX_MS).length === COUNT - (await done()), 15_000, 100);
      expect(await queue.getWaitingCount()).toBe(0);
      const doneWhilePaused = await done();
      expect(doneWhilePaused).toBeLessThan(COUNT);

      const resumed = Date.now();
      await changeRolloutState(redis, rec.rolloutId, 'resume', 'test', prefix);
      const report = await waitForRollout(redis, rec.rolloutId, prefix);
      expect(report.counts).toEqual({ OK: COUNT });
      expect(Date.now() - resumed).toBeLessThan(PAUSED_RECHECK_MAX_MS / 10); // released, not waited out
      const perMiner = await appliedWritesPerMiner(tf.fleet, 'SetPowerTarget', (r) => (r as { powerTarget: { watt: number } }).powerTarget.watt === 2150);
      expect(perMiner.size).toBe(COUNT);
      expect([...perMiner.values()].every((n) => n === 1)).toBe(true);
    } finally {
      await worker.close();
      await queue.close();
    }
  }, 60_000);

  it('abort releases the held miners to be cancelled at once', async () => {
    const prefix = uniquePrefix('holdabort');
    const worker = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 4, credentials: tf.credentials, coreOptions: FAST_CORE });
    try {
      const rec = await pausedMidWave(prefix, 2100);
      await new Promise((r) => setTimeout(r, 2_500));
      await changeRolloutState(redis, rec.rolloutId, 'abort', 'test', prefix);
      await until(async () => Object.values((await rolloutReport(redis, rec.rolloutId, prefix))?.counts ?? {}).reduce((a, b) => a + b, 0) === COUNT, 15_000, 100);
      const report = await rolloutReport(redis, rec.rolloutId, prefix);
      expect(report?.state).toBe('aborted');
      expect(report?.counts['CANCELLED']).toBeGreaterThan(0);
    } finally {
      await worker.close();
    }
  }, 60_000);

  it('waits as long as the pause has lasted, from 1 s to 10 minutes', () => {
    const now = Date.parse('2026-11-30T12:00:00Z');
    expect(pausedRecheckMs('2026-11-30T12:00:00Z', now)).toBe(1_000);
    expect(pausedRecheckMs('2026-11-30T11:59:30Z', now)).toBe(30_000);
    expect(pausedRecheckMs('2026-11-30T08:00:00Z', now)).toBe(PAUSED_RECHECK_MAX_MS);
    expect(pausedRecheckMs('', now)).toBe(1_000);
  });
});

describe('--max-in-flight-per-site', () => {
  it('a slot is held past its lease while its job runs (a reboot takes minutes), and freed when released', async () => {
    const { holdSiteSlot, acquireSiteSlot } = await import('../src/rollout/site-limit.js');
    const prefix = uniquePrefix('slot');
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
    const key = `${prefix}:site:a`;
    const slot = await holdSiteSlot(redis, key, 'job-1', 1, 300);
    if (!slot) throw new Error('the first holder got no slot');
    await new Promise((r) => setTimeout(r, 1_000)); // three leases
    expect(await acquireSiteSlot(redis, key, 'job-2', 1, 300)).toBe(false);
    await slot.release(queue);
    expect(await acquireSiteSlot(redis, key, 'job-2', 1, 300)).toBe(true);
    // A holder that stops renewing (its worker died) frees the slot after one lease.
    await new Promise((r) => setTimeout(r, 450));
    expect(await acquireSiteSlot(redis, key, 'job-3', 1, 300)).toBe(true);
    // A job given up for a lost lock leaves its slot to the worker running the job again (the same
    // holder: its job id), which renews it; only an unrenewed lease frees it.
    const given = await holdSiteSlot(redis, `${key}:2`, 'job-4', 1, 300);
    const again = await holdSiteSlot(redis, `${key}:2`, 'job-4', 1, 300);
    if (!given || !again) throw new Error('the job running again got no slot');
    given.leave();
    await new Promise((r) => setTimeout(r, 700));
    expect(await acquireSiteSlot(redis, `${key}:2`, 'job-5', 1, 300)).toBe(false);
    await again.release(queue);
    expect(await acquireSiteSlot(redis, `${key}:2`, 'job-5', 1, 300)).toBe(true);
    await queue.close();
  });

  it('a wakeup cut short (its job not delayed yet, or its worker gone before the job moved) is made again by the gate check', async () => {
    const { park, wakeParked, rewakeStale } = await import('../src/rollout/site-limit.js');
    const prefix = uniquePrefix('wake');
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
    const key = `${prefix}:site:a`;
    try {
      // Listed, then woken before its worker delayed it: the wakeup moves nothing.
      await queue.add('x', {}, { jobId: 'r.m1' });
      await park(redis, key, 'r.m1', `${prefix}:sites`);
      expect(await wakeParked(redis, queue, key, 1)).toBe(0);
      await queue.remove('r.m1');
      await queue.add('x', {}, { jobId: 'r.m1', delay: 600_000 }); // now parked for ten minutes
      expect(await wakeParked(redis, queue, key, 1)).toBe(0); // its id has left the list
      expect(await rewakeStale(redis, queue, key, 60_000)).toBe(0); // not stale yet
      expect(await rewakeStale(redis, queue, key, 0)).toBe(1);
      expect(await (await queue.getJob('r.m1'))!.getState()).toBe('waiting');
      expect(await rewakeStale(redis, queue, key, 0)).toBe(0); // made once
    } finally {
      await queue.close();
    }
  });

  it('miners refused a slot are parked, not tried again and again, and woken as slots free: one at a time per site, each written once', async () => {
    const prefix = uniquePrefix('park');
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
    const worker = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 16, credentials: tf.credentials, coreOptions: FAST_CORE });
    try {
      const targets = tf.inventory.targets.slice(0, 12);
      const rec = await startRollout(redis, { ...plan(2050), targets, maxInFlightPerSite: 1 }, prefix);
      // Soon every miner not being changed is parked for minutes, none waits in the queue.
      await until(async () => {
        const [waiting, parked] = [await queue.getWaitingCount(), (await held(queue, rec.rolloutId)).filter((d) => d >= 60_000).length];
        return waiting === 0 && parked >= 6;
      }, 15_000, 50);
      const report = await waitForRollout(redis, rec.rolloutId, prefix);
      expect(report.counts).toEqual({ OK: targets.length });
      const perMiner = await appliedWritesPerMiner(tf.fleet, 'SetPowerTarget', (r) => (r as { powerTarget: { watt: number } }).powerTarget.watt === 2050);
      expect(perMiner.size).toBe(targets.length);
      expect([...perMiner.values()].every((n) => n === 1)).toBe(true);
      // One at a time per site: no two changes of a site overlap.
      const outcomes = await new RunStore(redis, prefix).getOutcomes(`${rec.rolloutId}-w0`);
      const siteOf = new Map(tf.inventory.targets.map((t) => [t.minerId, t.site]));
      for (const site of new Set(siteOf.values())) {
        const spans = outcomes
          .filter((o) => siteOf.get(o.minerId) === site)
          .map((o) => ({ start: Date.parse(o.finishedAt) - o.durationMs, end: Date.parse(o.finishedAt) }))
          .sort((a, b) => a.start - b.start);
        for (let k = 1; k < spans.length; k++) expect(spans[k]!.start).toBeGreaterThanOrEqual(spans[k - 1]!.end - 5);
      }
    } finally {
      await worker.close();
      await queue.close();
    }
  }, 60_000);
});

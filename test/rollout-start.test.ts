// A rollout's start cut short (Ctrl-C, a worker's tick killed): the job that starts its first wave
// goes in before its record, waits for the record, and the record, state and start entry are written
// in one step — so no rollout is ever left `running` with nothing to start it, or without its start
// in the audit log.
import type { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openQueue } from '../src/fleet/queue.js';
import { readAudit } from '../src/rollout/audit.js';
import { CONTROL_QUEUE, addWaveJob } from '../src/rollout/control.js';
import { rolloutReport, startRollout, type RolloutPlan } from '../src/rollout/create.js';
import { waitForRollout } from '../src/rollout/wait.js';
import { RolloutOverlapError } from '../src/rollout/overlap.js';
import { RolloutStore } from '../src/rollout/store.js';
import { startWorker } from '../src/workers/worker.js';
import { FAST_CORE, appliedWritesPerMiner, powerTargetPlan, type TestFleet, startRedisFleet, type RedisFleet } from './helpers/fleet.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';
import { until } from './helpers/until.js';

const COUNT = 6;
let tf: TestFleet;
let redis: Redis;
let rf: RedisFleet;
beforeAll(async () => {
  ({ tf, redis } = rf = await startRedisFleet(COUNT, '127.43.0.1'));
});
afterAll(() => rf.close());

const plan = (rolloutId: string, watts: number): RolloutPlan => powerTargetPlan(tf, watts, { rolloutId, minSample: 1 });

/** Runs `fn` with a worker and the control queue on `prefix`, both closed after. */
async function withWorkerAndControl(prefix: string, fn: (control: Queue) => Promise<void>): Promise<void> {
  const w = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 4, credentials: tf.credentials, coreOptions: FAST_CORE });
  const control = openQueue(CONTROL_QUEUE, redis, prefix);
  try {
    await fn(control);
  } finally {
    await control.close();
    await w.close();
  }
}

describe('a rollout start cut short', () => {
  it("its first wave's job, in before the record, waits for it; started again, the rollout runs once with one start entry", async () => {
    const prefix = uniquePrefix('start-cut');
    await withWorkerAndControl(prefix, async (control) => {
      const id = 'ro-cut-1';
      // What a start killed right after its wave job leaves behind.
      await addWaveJob(control, id, 0, 0);
      await new Promise((r) => setTimeout(r, 1_500));
      // The job has not given up on the record (it used to complete at once, leaving a second start to add another).
      // (It looks again every 50 ms or so: caught delayed, waiting or active, never finished.)
      expect(['delayed', 'waiting', 'active', 'prioritized']).toContain(await control.getJobState(`${id}.wave.0`));
      expect(await rolloutReport(redis, id, prefix)).toBeUndefined();

      const rec = await startRollout(redis, plan(id, 2_555), prefix);
      const report = await waitForRollout(redis, rec.rolloutId, prefix);
      expect(report.state).toBe('completed');
      expect(report.counts).toEqual({ OK: COUNT });
      // Started again (a tick delivered twice): nothing new.
      await startRollout(redis, plan(id, 2_555), prefix);
      const starts = (await readAudit(redis, prefix, 200, id)).filter((e) => e.action === 'rollout.start');
      expect(starts).toHaveLength(1);
      const writes = await appliedWritesPerMiner(tf.fleet, 'SetPowerTarget', (r) => JSON.stringify(r).includes('2555'));
      expect([...writes.values()].sort()).toEqual(Array(COUNT).fill(1));
    });
  }, 60_000);

  it("a first wave's job whose rollout never got its record gives up once it is long overdue, changing nothing", async () => {
    const prefix = uniquePrefix('start-lost');
    await withWorkerAndControl(prefix, async (control) => {
      await control.add('wave', { rolloutId: 'ro-never', wave: 0 }, { jobId: 'ro-never.wave.0', timestamp: Date.now() - 11 * 60_000 });
      await until(async () => (await control.getJobState('ro-never.wave.0')) === 'completed', 10_000, 20);
      expect(await new RolloutStore(redis, prefix).listAll()).toEqual([]);
    });
  }, 30_000);

  it('two rollouts of one setting started at the same moment on the same miners: one starts, the other is refused', async () => {
    const prefix = uniquePrefix('start-race');
    const settled = await Promise.allSettled([startRollout(redis, plan('ro-race-a', 2_700), prefix), startRollout(redis, plan('ro-race-b', 2_750), prefix)]);
    expect(settled.map((s) => s.status).sort()).toEqual(['fulfilled', 'rejected']);
    const refused = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    expect(refused?.reason).toBeInstanceOf(RolloutOverlapError);
    expect(await new RolloutStore(redis, prefix).listAll()).toHaveLength(1);
  });

  it('the record, its state, its place in the list and its start entry are written together, once', async () => {
    const prefix = uniquePrefix('start-once');
    const store = new RolloutStore(redis, prefix);
    const { operation, spec, targets, inventoryDigest, waves, maxFailureRate, minSample, pauseBetweenMs, actor } = plan('ro-once', 2_600);
    const record = { rolloutId: 'ro-once', operation, spec, targets, inventoryDigest, waves, maxFailureRate, minSample, pauseBetweenMs, actor, waveEnds: [COUNT], startAtMs: Date.now(), createdAt: new Date().toISOString() };
    expect(await store.create(record, 'running', JSON.stringify({ action: 'rollout.start', subject: 'ro-once' }))).toBe(true);
    expect(await store.create(record, 'running', JSON.stringify({ action: 'rollout.start', subject: 'ro-once' }))).toBe(false);
    expect((await store.status('ro-once'))?.state).toBe('running');
    expect(await store.listAll()).toEqual(['ro-once']);
    expect((await readAudit(redis, prefix, 200, 'ro-once')).map((e) => e.action)).toEqual(['rollout.start']);
  });
});

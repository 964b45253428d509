// Staged rollouts on real Redis + the simulator: waves, exactly-once writes, gates, rollback.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { RunStore } from '../src/fleet/run-store.js';
import { QUEUE_NAME } from '../src/fleet/keys.js';
import { enqueueRun } from '../src/producer/enqueue.js';
import { readAudit } from '../src/rollout/audit.js';
import { changeRolloutState, rolloutReport, startRollout, type RolloutPlan } from '../src/rollout/create.js';
import { waitForRollout } from '../src/rollout/wait.js';
import { rollbackPlanFor } from '../src/rollout/rollback.js';
import { RolloutStore, TERMINAL, waveRunId, type RolloutRecord } from '../src/rollout/store.js';
import { CONTROL_QUEUE, addWaveJob } from '../src/rollout/control.js';
import { Queue } from 'bullmq';
import { startWorker, type RunningWorker } from '../src/workers/worker.js';
import type { MutationData } from '../src/workers/ops/mutate.js';
import { FAST_CORE, powerTargetPlan, type TestFleet, startRedisFleet, type RedisFleet } from './helpers/fleet.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';
import { until } from './helpers/until.js';
import { runCli } from './helpers/cli.js';

const COUNT = 200;
let tf: TestFleet;
let redis: Redis;
let rf: RedisFleet;
beforeAll(async () => {
  ({ tf, redis } = rf = await startRedisFleet(COUNT, '127.14.0.1'));
});
afterAll(() => rf.close());

async function withWorker<T>(prefix: string, fn: (w: RunningWorker) => Promise<T>, coreOptions: typeof FAST_CORE = FAST_CORE): Promise<T> {
  const w = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 32, credentials: tf.credentials, coreOptions });
  try {
    return await fn(w);
  } finally {
    await w.close();
  }
}

const plan = (watts: number, extra: Partial<RolloutPlan> = {}): RolloutPlan => powerTargetPlan(tf, watts, { waves: [0.1, 0.5, 1], ...extra });

async function writes(method = 'SetPowerTarget') {
  return (await tf.fleet.mutations()).filter((r) => r.method === method);
}

/** The rollout's end, or a failure when it has not ended within `ms`. */
async function ended(rolloutId: string, prefix: string, ms = 15_000) {
  await until(async () => TERMINAL.includes((await rolloutReport(redis, rolloutId, prefix))?.state ?? 'running'), ms, 100);
  return (await rolloutReport(redis, rolloutId, prefix))!;
}

describe('power-target rollout', () => {
  it('completes in waves; each miner gets exactly one SetPowerTarget with before/after; a repeat writes nothing', async () => {
    const prefix = uniquePrefix('ro');
    const writesBefore = (await writes()).length;
    const report = await withWorker(prefix, async () => {
      const rec = await startRollout(redis, plan(2500), prefix);
      return waitForRollout(redis, rec.rolloutId, prefix);
    });
    expect(report.state).toBe('completed');
    expect(report.waves.map((w) => w.miners)).toEqual([20, 80, 100]);
    expect(report.counts).toEqual({ OK: COUNT });

    const all = (await writes()).slice(writesBefore);
    expect(all.length).toBe(COUNT);
    expect(new Set(all.map((r) => r.minerId)).size).toBe(COUNT);
    expect(all.every((r) => (r.request as { powerTarget: { watt: number } }).powerTarget.watt === 2500 && r.result === 'applied')).toBe(true);
    const store = new RunStore(redis, prefix);
    const o = (await store.getOutcomes(waveRunId(report.rolloutId, 0)))[0]!;
    const state = await tf.fleet.state(o.minerId);
    expect(o.data as MutationData).toEqual({ change: 'applied', before: { powerTargetWatts: state.model.defaultPowerW }, after: { powerTargetWatts: 2500 }, verified: true });

    // Starting the same rollout again sends no write at all.
    const again = await withWorker(prefix, async () => waitForRollout(redis, (await startRollout(redis, plan(2500), prefix)).rolloutId, prefix));
    expect(again.state).toBe('completed');
    expect((await writes()).length - writesBefore).toBe(COUNT);
    const unchanged = await store.getOutcomes(waveRunId(again.rolloutId, 2));
    expect(unchanged.every((x) => (x.data as MutationData).change === 'unchanged')).toBe(true);

    const audit = await readAudit(redis, prefix);
    expect(audit.map((a) => a.action)).toEqual(expect.arrayContaining(['rollout.start', 'rollout.wave', 'rollout.completed']));
  });

  it('halts after the first wave when a quarter refuse the value, then rollback restores the changed miners', async () => {
    const prefix = uniquePrefix('halt');
    const before = await Promise.all(tf.fleet.miners.map((m) => tf.fleet.state(m.id)));
    const writesBefore = (await writes()).length;
    // The S21s (about a quarter of this fleet) only accept 2000 W and up.
    const report = await withWorker(prefix, async () => waitForRollout(redis, (await startRollout(redis, plan(1900), prefix)).rolloutId, prefix));
    expect(report.state).toBe('halted');
    expect(report.reason).toMatch(/wave 0: failure rate .* above the 5.0% gate/);
    expect(report.waves[1]?.counts).toEqual({});
    const wave0 = new Set(tf.inventory.targets.slice(0, 20).map((t) => t.minerId));
    const newWrites = (await writes()).slice(writesBefore);
    expect(newWrites.every((w) => wave0.has(w.minerId))).toBe(true); // nothing outside the finished wave
    expect(newWrites.every((w) => w.result === 'applied')).toBe(true); // refusals were caught before sending
    const refused = report.waves[0]?.counts['INVALID_REQUEST'] ?? 0;
    expect(refused).toBeGreaterThan(1);
    // Every miner of the wave has its outcome: changed, refused, or (the gate seeing the failures
    // mid-wave) not changed.
    const { OK: changed = 0, CANCELLED: cancelled = 0 } = report.waves[0]?.counts ?? {};
    expect(changed + refused + cancelled).toBe(20);
    expect(newWrites.length).toBe(changed);

    // Rollback: every changed miner back to its recorded before.
    const rb = await rollbackPlanFor(redis, report.rolloutId, prefix);
    expect(rb.targets.length).toBe(changed);
    const back = await withWorker(prefix, async () =>
      waitForRollout(redis, (await startRollout(redis, { ...plan(0), spec: rb.rec.spec, specByMiner: rb.specByMiner, targets: rb.targets, rollbackOf: report.rolloutId }, prefix)).rolloutId, prefix),
    );
    expect(back).toMatchObject({ state: 'completed', rollbackOf: report.rolloutId });
    for (const t of rb.targets) {
      const now = await tf.fleet.state(t.minerId);
      const was = before.find((s) => s.id === t.minerId)!;
      expect(now.powerTargetW).toBe(was.powerTargetW);
    }
    const audit = await readAudit(redis, prefix);
    expect(audit.map((a) => a.action)).toEqual(expect.arrayContaining(['rollout.halted', 'rollout.rollback']));
    // The rollback's entry says what it wrote: each miner's own earlier value, counted, not one miner's.
    const entry = audit.find((a) => a.action === 'rollout.rollback')!;
    const wanted = new Map<number, number>();
    for (const t of rb.targets) {
      const w = before.find((s) => s.id === t.minerId)!.powerTargetW;
      wanted.set(w, (wanted.get(w) ?? 0) + 1);
    }
    const restores = (entry.details as { restores: { spec: { watts: number }; miners: number }[] }).restores;
    expect(new Map(restores.map((r) => [r.spec.watts, r.miners]))).toEqual(wanted);
    expect(entry.details).not.toHaveProperty('spec');
  });
});

describe('a tuner target across its two modes', () => {
  it('a hashrate target on miners that ran to a power target records that power target, and rollback restores it', async () => {
    const prefix = uniquePrefix('modes');
    const targets = tf.inventory.targets.slice(100, 120);
    const before = await Promise.all(targets.map((t) => tf.fleet.state(t.minerId)));
    expect(before.every((s) => s.tunerMode === 'TUNER_MODE_POWER_TARGET')).toBe(true);
    const hashrate = plan(0, { operation: 'hashrate-target', spec: { kind: 'hashrate-target', terahashPerSecond: 100 }, targets, waves: [1] });
    const report = await withWorker(prefix, async () => waitForRollout(redis, (await startRollout(redis, hashrate, prefix)).rolloutId, prefix));
    expect(report).toMatchObject({ state: 'completed', counts: { OK: 20 } });
    for (const o of await new RunStore(redis, prefix).getOutcomes(waveRunId(report.rolloutId, 0))) {
      const was = before.find((s) => s.id === o.minerId)!;
      expect(o.data).toEqual({ change: 'applied', before: { hashrateTargetThs: null, powerTargetWatts: was.powerTargetW }, after: { hashrateTargetThs: 100 }, verified: true });
    }
    expect((await tf.fleet.state(targets[0]!.minerId)).tunerMode).toBe('TUNER_MODE_HASHRATE_TARGET');

    // The rollback puts each miner back on its own power target (it said "changed no miner" before).
    const rb = await rollbackPlanFor(redis, report.rolloutId, prefix);
    expect([rb.targets.length, rb.skipped]).toEqual([20, []]);
    const back = await withWorker(prefix, async () =>
      waitForRollout(redis, (await startRollout(redis, { ...hashrate, spec: rb.rec.spec, specByMiner: rb.specByMiner, targets: rb.targets, rollbackOf: report.rolloutId }, prefix)).rolloutId, prefix),
    );
    expect(back).toMatchObject({ state: 'completed', counts: { OK: 20 } });
    for (const s of before) {
      const now = await tf.fleet.state(s.id);
      expect([now.tunerMode, now.powerTargetW]).toEqual(['TUNER_MODE_POWER_TARGET', s.powerTargetW]);
    }
    // Each outcome names the change it made: a power target, not the rollout's hashrate one.
    const restored = await new RunStore(redis, prefix).getOutcomes(waveRunId(back.rolloutId, 0));
    expect(new Set(restored.map((o) => o.operation))).toEqual(new Set(['power-target']));
  });
});

describe('a reboot rollout', () => {
  it('asks for the reboot when its wave starts: a miner that restarted by itself before that is rebooted all the same, once', async () => {
    const prefix = uniquePrefix('reboot-at');
    const targets = tf.inventory.targets.slice(140, 143);
    const id = targets[0]!.minerId;
    const writesBefore = (await writes('Reboot')).length;
    // Requested 10 s ago (as `rollout start --at` or a schedule records it); the miner restarts by
    // itself since, and its wave starts more than a second after it is back (uptime is in whole seconds).
    const reboot = plan(0, { operation: 'reboot', spec: { kind: 'reboot', notBeforeMs: Date.now() - 10_000 }, targets, waves: [1] });
    const restartedAt = Date.now();
    await tf.fleet.reboot(id, 200);
    await until(async () => (await tf.fleet.state(id)).bootedAtMs > restartedAt, 5_000);
    await new Promise((r) => setTimeout(r, 1_100));
    const report = await withWorker(prefix, async () => waitForRollout(redis, (await startRollout(redis, reboot, prefix)).rolloutId, prefix));
    expect(report).toMatchObject({ state: 'completed', counts: { OK: 3 } });
    const outcomes = await new RunStore(redis, prefix).getOutcomes(waveRunId(report.rolloutId, 0));
    expect(outcomes.map((o) => (o.data as MutationData).change)).toEqual(['applied', 'applied', 'applied']);
    const rebooted = (await writes('Reboot')).slice(writesBefore).map((w) => w.minerId);
    expect(rebooted.sort()).toEqual(targets.map((t) => t.minerId).sort());
  });
});

describe('the failure gate mid-wave', () => {
  it('halts a wave once its failures so far would fail the gate even if every miner still to go succeeded: those are not changed', async () => {
    const prefix = uniquePrefix('halt-early');
    const writesBefore = (await writes()).length;
    // One wave of all 200, two miners at a time (one per site), each call 20 ms: the gate looks every
    // 300 ms while about a quarter (the S21s) refuse 1900 W.
    await Promise.all(tf.fleet.miners.map((m) => tf.fleet.setFaults(m.id, { slow: { latencyMs: 20 } })));
    try {
      const report = await withWorker(prefix, async () => waitForRollout(redis, (await startRollout(redis, plan(1900, { waves: [1], maxInFlightPerSite: 1 }), prefix)).rolloutId, prefix));
      expect(report.state).toBe('halted');
      expect(report.reason).toMatch(/^wave 0: failure rate already \d+\.\d% \(\d+ failed of the 200 miners up to this wave\) above the 5\.0% gate, even if the \d+ still to go all succeed: it stops here \(miners being changed finish; the others are left unchanged\)$/);
      const { OK: changed = 0, INVALID_REQUEST: refused = 0, CANCELLED: cancelled = 0, ...other } = report.waves[0]!.counts;
      expect(other).toEqual({});
      expect(refused).toBeGreaterThan(10); // 5% of 200
      expect(cancelled).toBeGreaterThan(100);
      expect(changed + refused + cancelled).toBe(COUNT); // one outcome each: --wait waited for the wave to settle
      const newWrites = (await writes()).slice(writesBefore);
      expect(newWrites.length).toBe(changed);
      const outcomes = await new RunStore(redis, prefix).getOutcomes(waveRunId(report.rolloutId, 0));
      const changedIds = new Set(outcomes.filter((o) => o.code === 'OK').map((o) => o.minerId));
      expect(newWrites.every((w) => changedIds.has(w.minerId))).toBe(true);
      expect((await readAudit(redis, prefix)).filter((a) => a.action === 'rollout.halted').length).toBe(1);
    } finally {
      await Promise.all(tf.fleet.miners.map((m) => tf.fleet.setFaults(m.id, {})));
    }
  });
});

describe('waiting for a rollout', () => {
  it('ended with miners of its wave still without an outcome and no worker to settle them, the wait stops after a while instead of never', async () => {
    const prefix = uniquePrefix('wait-stall');
    const store = new RolloutStore(redis, prefix);
    // No worker runs: the wave is marked started, its miners have no outcome, then it is aborted.
    const rec = await startRollout(redis, plan(2500, { targets: tf.inventory.targets.slice(0, 10), waves: [1] }), prefix);
    await store.setWave(rec.rolloutId, 0);
    await changeRolloutState(redis, rec.rolloutId, 'abort', 'test', prefix);
    const started = Date.now();
    const report = await waitForRollout(redis, rec.rolloutId, prefix, undefined, undefined, 600);
    expect(report.state).toBe('aborted');
    expect(Date.now() - started).toBeGreaterThanOrEqual(600);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('rollout control', () => {
  it('pause holds the next wave, resume continues, abort cancels the rest', async () => {
    const prefix = uniquePrefix('ctl');
    await withWorker(prefix, async () => {
      const { changeRolloutState } = await import('../src/rollout/create.js');
      const rec = await startRollout(redis, plan(2600, { pauseBetweenMs: 800 }), prefix);
      // Wave 0 finishes, then the rollout waits out --pause-between: pause it there.
      await until(async () => ((await rolloutReport(redis, rec.rolloutId, prefix))?.waves[0]?.counts['OK'] ?? 0) === 20);
      await changeRolloutState(redis, rec.rolloutId, 'pause', 'test', prefix);
      await new Promise((r) => setTimeout(r, 1_500));
      const paused = await rolloutReport(redis, rec.rolloutId, prefix);
      expect(paused?.state).toBe('paused');
      expect(paused?.waves[1]?.counts).toEqual({});
      await changeRolloutState(redis, rec.rolloutId, 'resume', 'test', prefix);
      await until(async () => Object.keys((await rolloutReport(redis, rec.rolloutId, prefix))?.waves[1]?.counts ?? {}).length > 0);
      await changeRolloutState(redis, rec.rolloutId, 'abort', 'test', prefix);
      const end = await waitForRollout(redis, rec.rolloutId, prefix);
      expect(end.state).toBe('aborted');
      expect(end.waves[2]?.counts).toEqual({});
      // Wave 0's result is audited once, though its gate ran again on resume.
      const waves = (await readAudit(redis, prefix)).filter((e) => e.action === 'rollout.wave' && e.subject === rec.rolloutId);
      expect(waves.filter((e) => (e.details as { wave: number }).wave === 0)).toHaveLength(1);
    });
  });
});

describe("a wave's end", () => {
  it('is recorded and audited once, by the first gate that sees it, even when two see it in the same millisecond', async () => {
    const prefix = uniquePrefix('wave-end');
    const store = new RolloutStore(redis, prefix);
    const rec = await startRollout(redis, plan(2500, { targets: tf.inventory.targets.slice(0, 2), startAtMs: Date.now() + 3_600_000 }), prefix);
    const entry = (n: number) => JSON.stringify({ at: '', actor: 'test', action: 'rollout.wave', subject: rec.rolloutId, details: { wave: 0, gate: n } });
    const t = Date.now();
    // Two gate jobs on one worker, in one turn of its event loop: the same clock reading.
    const ended = await Promise.all([store.markWaveEnded(rec.rolloutId, 0, entry(1), t), store.markWaveEnded(rec.rolloutId, 0, entry(2), t)]);
    expect(ended).toEqual([t, t]);
    expect(await store.markWaveEnded(rec.rolloutId, 0, entry(3), t + 5_000)).toBe(t);
    const audited = (await readAudit(redis, prefix)).filter((e) => e.action === 'rollout.wave');
    expect(audited.map((e) => (e.details as { gate: number }).gate)).toEqual([1]);
  });
});

describe('a miner job of a rollout that no longer exists', () => {
  it('(a schedule\'s rollout deleted by its retention, its job delivered late) never changes the miner', async () => {
    const prefix = uniquePrefix('gone');
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
    const watts = 1_917; // only this test writes it
    try {
      await withWorker(prefix, async () => {
        const targets = tf.inventory.targets.slice(0, 3);
        const record = await enqueueRun(queue, new RunStore(redis, prefix), { file: 'gone', targets, digest: 'd' }, { operation: 'power-target', runId: 'night-1796000000000-w0', params: { rolloutId: 'night-1796000000000', wave: 0, mutation: { kind: 'power-target', watts } } });
        await until(async () => (await queue.getCompletedCount()) === 3);
        expect((await new RunStore(redis, prefix).getCounts(record.runId)).done).toBe(0); // nothing recorded
      });
      expect((await writes()).filter((w) => (w.request as { powerTarget?: { watt?: number } }).powerTarget?.watt === watts)).toEqual([]);
    } finally {
      await queue.close();
    }
  });
});

describe('the audit log', () => {
  it("finds one rollout's or schedule's entries however far back they are (--subject)", async () => {
    const prefix = uniquePrefix('audit-subject');
    const write = redis.pipeline();
    const entry = (subject: string, action: string) => JSON.stringify({ at: '', actor: 'test', action, subject });
    write.xadd(`${prefix}:audit`, '*', 'entry', entry('ro-old', 'rollout.start'));
    write.xadd(`${prefix}:audit`, '*', 'entry', entry('nightly-1796000000000', 'rollout.start'));
    for (let i = 0; i < 2_500; i++) write.xadd(`${prefix}:audit`, '*', 'entry', entry(`ro-${i}`, 'rollout.start'));
    write.xadd(`${prefix}:audit`, '*', 'entry', entry('ro-old', 'rollout.completed'));
    await write.exec();
    expect((await readAudit(redis, prefix, 200, 'ro-old')).map((e) => e.action)).toEqual(['rollout.start', 'rollout.completed']);
    expect((await readAudit(redis, prefix, 200, 'nightly')).map((e) => e.subject)).toEqual(['nightly-1796000000000']);
    expect((await readAudit(redis, prefix, 1, 'ro-old')).map((e) => e.action)).toEqual(['rollout.completed']); // the newest
    expect(await readAudit(redis, prefix, 200, 'nope')).toEqual([]);
    expect(await readAudit(redis, prefix, 3)).toHaveLength(3);
  });
});

describe('a rollout state change', () => {
  it('moves, sets or forgets its reason and appends its audit entry in one step, once', async () => {
    const prefix = uniquePrefix('transition');
    const store = new RolloutStore(redis, prefix);
    const rec = await startRollout(redis, plan(2500, { targets: tf.inventory.targets.slice(0, 2), startAtMs: Date.now() + 3_600_000 }), prefix);
    const audit = (action: string) => JSON.stringify({ at: '', actor: 'test', action, subject: rec.rolloutId });
    const actions = async () => (await readAudit(redis, prefix)).map((e) => e.action).filter((a) => a !== 'rollout.start');
    const moves = await Promise.all([1, 2].map(() => store.transition(rec.rolloutId, ['scheduled'], 'failed', { reason: 'OOM', audit: audit('rollout.failed') })));
    expect(moves.sort()).toEqual([false, true]);
    expect(await actions()).toEqual(['rollout.failed']);
    expect((await store.status(rec.rolloutId))?.reason).toBe('OOM');
    // Paused or aborted, a failed rollout keeps its reason; resumed, it is forgotten.
    expect(await store.transition(rec.rolloutId, ['failed'], 'paused', { audit: audit('rollout.pause') })).toBe(true);
    expect((await store.status(rec.rolloutId))?.reason).toBe('OOM');
    expect(await store.transition(rec.rolloutId, ['paused'], 'running', { clearReason: true, audit: audit('rollout.resume') })).toBe(true);
    expect((await store.status(rec.rolloutId))?.reason).toBeUndefined();
    expect(await actions()).toEqual(['rollout.failed', 'rollout.pause', 'rollout.resume']);
  });
});

describe('a rollout paused between waves', () => {
  /** Starts a 2-wave rollout with --pause-between 1.5s and pauses it once wave 0 has ended. */
  async function pausedBetweenWaves(prefix: string, watts: number) {
    const rec = await startRollout(redis, plan(watts, { waves: [0.1, 1], pauseBetweenMs: 1_500 }), prefix);
    const store = new RolloutStore(redis, prefix);
    // Between waves, its report says when the next one starts: --pause-between after wave 0 ended.
    await until(async () => (await rolloutReport(redis, rec.rolloutId, prefix))?.nextWaveAt !== undefined, 30_000, 20);
    const between = await rolloutReport(redis, rec.rolloutId, prefix);
    const st = await store.status(rec.rolloutId);
    expect(between?.nextWaveAt).toBe(new Date((st?.waveEndedAtMs ?? 0) + 1_500).toISOString());
    await changeRolloutState(redis, rec.rolloutId, 'pause', 'test', prefix);
    return { rec, store, nextWaveAtMs: Date.parse(between?.nextWaveAt ?? '') };
  }

  it("holds the wave whose start came during the pause; resume starts it at once, each miner written once", async () => {
    const prefix = uniquePrefix('held');
    const writesBefore = (await writes()).length;
    const end = await withWorker(prefix, async () => {
      const { rec, nextWaveAtMs } = await pausedBetweenWaves(prefix, 2650);
      // Its start comes (1.5 s after wave 0 ended) while paused: nothing starts.
      await new Promise((r) => setTimeout(r, Math.max(0, nextWaveAtMs - Date.now()) + 1_000));
      const held = await rolloutReport(redis, rec.rolloutId, prefix);
      expect(held?.waves[1]?.counts).toEqual({});
      expect(held).toMatchObject({ state: 'paused', heldWave: 1 }); // `rollout status`: "starts on resume"
      const resumedAt = Date.now();
      await changeRolloutState(redis, rec.rolloutId, 'resume', 'test', prefix);
      const report = await ended(rec.rolloutId, prefix);
      const firstWave1 = Math.min(...(await new RunStore(redis, prefix).getOutcomes(waveRunId(rec.rolloutId, 1))).map((o) => Date.parse(o.finishedAt) - o.durationMs));
      expect(firstWave1 - resumedAt).toBeLessThan(5_000); // not a new --pause-between, nor a stall
      return report;
    });
    // Before held waves, the wave's job ran during the pause and ended, so nothing ever started it again.
    expect(end.state).toBe('completed');
    expect(end.counts).toEqual({ OK: COUNT });
    const ours = (await writes()).slice(writesBefore);
    expect(ours.length).toBe(COUNT);
    expect(new Set(ours.map((w) => w.minerId)).size).toBe(COUNT);
  });

  it('resumed, the gate starts the next wave even where its earlier job ran without starting it', async () => {
    const prefix = uniquePrefix('held');
    const end = await withWorker(prefix, async () => {
      const { rec, store } = await pausedBetweenWaves(prefix, 2660);
      await until(async () => (await store.status(rec.rolloutId))?.heldWave === 1, 10_000, 50);
      // As a worker of a version before held waves left it: the wave's job done, nothing held.
      await store.takeHeldWave(rec.rolloutId);
      await changeRolloutState(redis, rec.rolloutId, 'resume', 'test', prefix);
      return ended(rec.rolloutId, prefix);
    });
    expect(end.state).toBe('completed');
    expect(end.counts).toEqual({ OK: COUNT });
  });
});

describe('rollback of an unfinished rollout', () => {
  it('is refused while the rollout runs (it would go on changing miners); after abort, restores what it changed', async () => {
    const prefix = uniquePrefix('rbrun');
    await withWorker(prefix, async () => {
      const rec = await startRollout(redis, plan(2690, { waves: [0.1, 1], pauseBetweenMs: 60_000 }), prefix);
      await until(async () => (await rolloutReport(redis, rec.rolloutId, prefix))?.nextWaveAt !== undefined, 30_000, 20);
      await expect(rollbackPlanFor(redis, rec.rolloutId, prefix)).rejects.toThrow(
        `rollout ${rec.rolloutId} is running: abort it first (bos-fleet rollout abort ${rec.rolloutId}), then roll it back; rolled back now, the miners it changes from here on would be left changed`,
      );
      await changeRolloutState(redis, rec.rolloutId, 'abort', 'test', prefix);
      // A miner journaled for its write but without an outcome yet is being changed: not yet.
      const runs = new RunStore(redis, prefix);
      await runs.journalBefore(waveRunId(rec.rolloutId, 0), 'm-in-flight', { powerTargetWatts: 3000 });
      await expect(rollbackPlanFor(redis, rec.rolloutId, prefix)).rejects.toThrow(`rollout ${rec.rolloutId} still has 1 miner being changed (m-in-flight): roll back once it has its outcome`);
      await redis.hdel(`${prefix}:journal:${waveRunId(rec.rolloutId, 0)}`, 'm-in-flight');
      const rb = await rollbackPlanFor(redis, rec.rolloutId, prefix);
      expect(rb.targets).toHaveLength(20);
    });
  });

  it('a miner still being read when the rollout is aborted is not written after it: a rollback planned then misses no changed miner', async () => {
    const prefix = uniquePrefix('rbrace');
    const targets = tf.inventory.targets.slice(180, 186);
    const slow = targets[0]!;
    await tf.fleet.setFaults(slow.minerId, { slow: { latencyMs: 500 } });
    try {
      await withWorker(prefix, async () => {
        const rec = await startRollout(redis, plan(2650, { targets, waves: [1], minSample: 100 }), prefix);
        const run = waveRunId(rec.rolloutId, 0);
        const runs = new RunStore(redis, prefix);
        // The others changed; the slow one is reading its miner (logged in, API version, target), not yet journaled.
        await until(async () => (await runs.getOutcomes(run)).length === targets.length - 1, 10_000, 20);
        expect(await runs.journaled(run, slow.minerId)).toBeUndefined();
        await changeRolloutState(redis, rec.rolloutId, 'abort', 'test', prefix);
        const rb = await rollbackPlanFor(redis, rec.rolloutId, prefix);
        await waitForRollout(redis, rec.rolloutId, prefix);
        const outcome = (await runs.getOutcomes(run)).find((o) => o.minerId === slow.minerId);
        expect(outcome).toMatchObject({ code: 'CANCELLED' });
        expect(outcome?.error?.message).toContain(`rollout ${rec.rolloutId} was aborted before this miner was changed`);
        expect((await tf.fleet.state(slow.minerId)).powerTargetW).not.toBe(2650);
        expect(rb.targets.map((t) => t.minerId).sort()).toEqual(targets.slice(1).map((t) => t.minerId).sort());
      });
    } finally {
      await tf.fleet.setFaults(slow.minerId, {});
    }
  });

  it('rollout rollback right after an abort waits for the miner still being written, and restores it too', async () => {
    const prefix = uniquePrefix('rbwait');
    const targets = tf.inventory.targets.slice(186, 190);
    const late = targets[0]!;
    const original = (await tf.fleet.state(late.minerId)).powerTargetW;
    // Its write lands, but its reply never comes: the job waits out the 5 s write deadline, then reads it back.
    await tf.fleet.setFaults(late.minerId, { lostReply: true });
    try {
      await withWorker(
        prefix,
        async () => {
          const rec = await startRollout(redis, plan(2640, { targets, waves: [1], minSample: 100 }), prefix);
          const runs = new RunStore(redis, prefix);
          await until(async () => (await runs.journaled(waveRunId(rec.rolloutId, 0), late.minerId)) !== undefined, 10_000, 10);
          await changeRolloutState(redis, rec.rolloutId, 'abort', 'test', prefix);
          const r = await runCli(['rollout', 'rollback', rec.rolloutId, '--yes', '--json', '--redis', redisUrl(), '--prefix', prefix]);
          expect(r.code).toBe(0);
          expect(r.stderr).toContain(`bos-fleet: rollout ${rec.rolloutId} still has 1 miner being changed: waiting for its outcome before rolling back`);
          const rollback = (JSON.parse(r.stdout) as { rolloutId: string }).rolloutId;
          // Every miner the wave changed (journaled) is in it, the late one too; a loaded machine may
          // have aborted before the others' jobs journaled (those ended CANCELLED, unchanged).
          const changed: string[] = [];
          for (const t of targets) if ((await runs.journaled(waveRunId(rec.rolloutId, 0), t.minerId)) !== undefined) changed.push(t.minerId);
          expect(changed).toContain(late.minerId);
          expect((await new RolloutStore(redis, prefix).members(rollback))?.targets.map((t) => t.minerId).sort()).toEqual(changed.sort());
          await tf.fleet.setFaults(late.minerId, {});
          await waitForRollout(redis, rollback, prefix);
          expect((await tf.fleet.state(late.minerId)).powerTargetW).toBe(original);
        },
        { ...FAST_CORE, mutationTimeoutMs: 5_000, callBudgetMs: 12_000 },
      );
    } finally {
      await tf.fleet.setFaults(late.minerId, {});
    }
  });
});

describe('a write cut off with the miner gone before it could be read back (OUTCOME_UNKNOWN)', () => {
  it('is settled by a later job attempt that reads the miner first; one still unreadable at the last attempt stays OUTCOME_UNKNOWN', async () => {
    const prefix = uniquePrefix('unknown');
    const [back, gone] = tf.inventory.targets.slice(190, 192) as [(typeof tf.inventory.targets)[0], (typeof tf.inventory.targets)[0]];
    for (const t of [back, gone]) await tf.fleet.setFaults(t.minerId, { lostReply: true });
    const writesSoFar = async (id: string) => (await tf.fleet.mutations(id)).filter((m) => m.method === 'SetPowerTarget').length;
    const earlier = { [back.minerId]: await writesSoFar(back.minerId), [gone.minerId]: await writesSoFar(gone.minerId) };
    const writesTo = async (id: string) => (await writesSoFar(id)) - (earlier[id] ?? 0);
    try {
      await withWorker(prefix, async () => {
        const rec = await startRollout(redis, plan(2630, { targets: [back, gone], waves: [1], minSample: 100 }), prefix);
        // Each write lands but its reply never comes; then the miner drops off (power, a switch) before the read-back.
        await until(async () => (await writesTo(back.minerId)) === 1 && (await writesTo(gone.minerId)) === 1, 10_000, 10);
        await Promise.all([tf.fleet.reboot(back.minerId, 1_000), tf.fleet.reboot(gone.minerId, 12_000)]);
        const report = await waitForRollout(redis, rec.rolloutId, prefix);
        const outcomes = new Map((await new RunStore(redis, prefix).getOutcomes(waveRunId(rec.rolloutId, 0))).map((o) => [o.minerId, o]));
        // Back within the job's retries: read first, found changed, reported applied with the journaled before; no second write.
        expect(outcomes.get(back.minerId)).toMatchObject({ code: 'OK', data: { change: 'applied', after: { powerTargetWatts: 2630 }, verified: true } });
        expect(outcomes.get(back.minerId)?.jobAttempts).toBeGreaterThan(1);
        expect(await writesTo(back.minerId)).toBe(1);
        // Never back: the outcome still says the write may have landed (not MINER_UNREACHABLE), after every attempt.
        const unknown = outcomes.get(gone.minerId);
        expect(unknown).toMatchObject({ code: 'OUTCOME_UNKNOWN', jobAttempts: 3 });
        expect(unknown?.error?.message).toContain('an earlier attempt wrote to this miner (or was cut off about to) and it could not be read back since: ');
        expect(report.counts).toEqual({ OK: 1, OUTCOME_UNKNOWN: 1 });
      });
    } finally {
      for (const t of [back, gone]) await tf.fleet.setFaults(t.minerId, {});
    }
  });
});

describe('a rollout step that fails', () => {
  const membersKey = (prefix: string, id: string) => `${prefix}:rollout:${id}:members`;

  it('is tried again (the status says so) and the rollout goes on once the cause is gone', async () => {
    const prefix = uniquePrefix('cfail');
    const logged = vi.spyOn(console, 'error');
    const end = await withWorker(prefix, async () => {
      const rec = await startRollout(redis, plan(2670, { targets: tf.inventory.targets.slice(0, 20), waves: [1], startAtMs: Date.now() + 500 }), prefix);
      // Its miners unreadable (a Redis error) when the wave is to start.
      const members = (await redis.get(membersKey(prefix, rec.rolloutId)))!;
      await redis.del(membersKey(prefix, rec.rolloutId));
      await redis.hset(membersKey(prefix, rec.rolloutId), 'not', 'a string');
      await until(async () => (await rolloutReport(redis, rec.rolloutId, prefix))?.retrying !== undefined, 10_000, 50);
      const report = (await rolloutReport(redis, rec.rolloutId, prefix))!;
      expect(report.state).toBe('running');
      expect(report.retrying).toMatchObject({ step: 'wave 0 could not start', attemptsMade: 1, attempts: 12 });
      expect(report.retrying?.error).toMatch(/WRONGTYPE/);
      await redis.del(membersKey(prefix, rec.rolloutId));
      await redis.set(membersKey(prefix, rec.rolloutId), members);
      return ended(rec.rolloutId, prefix, 20_000);
    });
    expect(end.state).toBe('completed');
    expect(end.counts).toEqual({ OK: 20 });
    expect(end.retrying).toBeUndefined();
    // The worker's log says it too.
    expect(logged.mock.calls.map((c) => String(c[0]))).toContainEqual(expect.stringMatching(new RegExp(`^worker: rollout ${end.rolloutId}: wave 0 could not start: WRONGTYPE .* \\(attempt 1 of 12, tried again\\)`)));
    logged.mockRestore();
  });

  it('for good fails the rollout with the reason (not `running` for ever); resume takes it up again', async () => {
    const prefix = uniquePrefix('cfail');
    await withWorker(prefix, async () => {
      const rec = await startRollout(redis, plan(2680, { targets: tf.inventory.targets.slice(0, 20), waves: [1], startAtMs: Date.now() + 500 }), prefix);
      const members = (await redis.get(membersKey(prefix, rec.rolloutId)))!;
      await redis.del(membersKey(prefix, rec.rolloutId));
      const failed = await ended(rec.rolloutId, prefix);
      expect(failed.state).toBe('failed');
      expect(failed.reason).toBe(`wave 0 could not start: rollout ${rec.rolloutId} has no miners recorded (after 1 attempt; \`bos-fleet rollout resume ${rec.rolloutId}\` takes it up again)`);
      expect((await readAudit(redis, prefix)).map((e) => e.action)).toContain('rollout.failed');
      await redis.set(membersKey(prefix, rec.rolloutId), members);
      expect(await changeRolloutState(redis, rec.rolloutId, 'resume', 'test', prefix)).toBe('running');
      const end = await ended(rec.rolloutId, prefix);
      expect(end).toMatchObject({ state: 'completed', counts: { OK: 20 } });
      expect(end.reason).toBeUndefined();
    });
  });
});

describe('rollout timing and limits', () => {
  it('--at starts it later; --max-in-flight-per-site 1 changes one miner at a time per site', async () => {
    const prefix = uniquePrefix('at');
    const sites = tf.inventory.targets.slice(0, 8); // sites a and b alternate
    const startAtMs = Date.now() + 1_500;
    const writesBefore = (await writes()).length;
    const report = await withWorker(prefix, async () => {
      const rec = await startRollout(redis, plan(2450, { targets: sites, waves: [1], maxInFlightPerSite: 1, startAtMs }), prefix);
      // While scheduled, its report says when it starts (`rollout status`: "scheduled for …").
      expect(await rolloutReport(redis, rec.rolloutId, prefix)).toMatchObject({ state: 'scheduled', startAt: new Date(startAtMs).toISOString() });
      // Paused and resumed before its time, it is scheduled again (not `running` with nothing started).
      await changeRolloutState(redis, rec.rolloutId, 'pause', 'test', prefix);
      expect(await changeRolloutState(redis, rec.rolloutId, 'resume', 'test', prefix)).toBe('scheduled');
      expect(await rolloutReport(redis, rec.rolloutId, prefix)).toMatchObject({ state: 'scheduled', startAt: new Date(startAtMs).toISOString() });
      return waitForRollout(redis, rec.rolloutId, prefix);
    });
    expect(report.state).toBe('completed');
    expect(report.startAt).toBeUndefined();
    const ours = (await writes()).slice(writesBefore);
    expect(ours.length).toBe(8);
    expect(Math.min(...ours.map((w) => w.atMs))).toBeGreaterThanOrEqual(startAtMs);
    // With one slot per site, the miners of a site were changed strictly one after another.
    const store = new RunStore(redis, prefix);
    const outcomes = await store.getOutcomes(waveRunId(report.rolloutId, 0));
    for (const site of ['site-a', 'site-b']) {
      const spans = outcomes
        .filter((o) => tf.inventory.targets.find((t) => t.minerId === o.minerId)?.site === site)
        .map((o) => ({ end: Date.parse(o.finishedAt), start: Date.parse(o.finishedAt) - o.durationMs }))
        .sort((a, b) => a.start - b.start);
      for (let k = 1; k < spans.length; k++) expect(spans[k]!.start).toBeGreaterThanOrEqual(spans[k - 1]!.end - 5);
    }
  });
});


describe('unfinished rollouts of one setting on the same miners', () => {
  it('are refused side by side (naming the other and the shared miners) unless allowed; other settings and finished ones do not count', async () => {
    const prefix = uniquePrefix('overlap');
    const first = tf.inventory.targets.slice(0, 10);
    const second = tf.inventory.targets.slice(5, 15);
    // No worker runs: the first rollout stays running.
    const a = await startRollout(redis, plan(2500, { targets: first }), prefix);
    await expect(startRollout(redis, plan(2600, { targets: second }), prefix)).rejects.toThrow(
      `rollout ${a.rolloutId} (power-target, running) already changes the tuner target of 5 of these 10 miners: wait for it to end, stop it (bos-fleet rollout abort ${a.rolloutId}), or pass --allow-overlap`,
    );
    // A hashrate target is the same tuner setting; pools are another one.
    await expect(startRollout(redis, plan(0, { operation: 'hashrate-target', spec: { kind: 'hashrate-target', terahashPerSecond: 100 }, targets: second }), prefix)).rejects.toThrow('already changes the tuner target');
    await expect(startRollout(redis, plan(0, { operation: 'locate-on', spec: { kind: 'locate', enable: true }, targets: second }), prefix)).resolves.toBeDefined();
    await expect(startRollout(redis, plan(2600, { targets: tf.inventory.targets.slice(20, 30) }), prefix)).resolves.toBeDefined(); // no shared miner
    await expect(startRollout(redis, plan(2600, { targets: second, allowOverlap: true }), prefix)).resolves.toBeDefined();
    // Aborted (finished): no longer in the way.
    const prefix2 = uniquePrefix('overlap');
    const b = await startRollout(redis, plan(2500, { targets: first }), prefix2);
    await changeRolloutState(redis, b.rolloutId, 'abort', 'test', prefix2);
    await expect(startRollout(redis, plan(2600, { targets: second }), prefix2)).resolves.toBeDefined();
  });

  it('a reboot never runs beside another unfinished rollout of the same miners, whatever that one changes', async () => {
    const prefix = uniquePrefix('overlap-reboot');
    const first = tf.inventory.targets.slice(0, 10);
    const second = tf.inventory.targets.slice(5, 15);
    const reboot = (targets: typeof first, extra: Partial<RolloutPlan> = {}) => plan(0, { operation: 'reboot', spec: { kind: 'reboot', notBeforeMs: 0 }, targets, ...extra });
    // No worker runs: each rollout stays running.
    const a = await startRollout(redis, plan(2500, { targets: first }), prefix);
    await expect(startRollout(redis, reboot(second), prefix)).rejects.toThrow(
      `rollout ${a.rolloutId} (power-target, running) is changing the tuner target of 5 of these 10 miners (a reboot would fail that change): wait for it to end, stop it (bos-fleet rollout abort ${a.rolloutId}), or pass --allow-overlap`,
    );
    await expect(startRollout(redis, reboot(tf.inventory.targets.slice(20, 30)), prefix)).resolves.toBeDefined(); // no shared miner
    const prefix2 = uniquePrefix('overlap-reboot');
    const r = await startRollout(redis, reboot(first), prefix2);
    await expect(startRollout(redis, plan(0, { operation: 'locate-on', spec: { kind: 'locate', enable: true }, targets: second }), prefix2)).rejects.toThrow(
      `rollout ${r.rolloutId} (reboot, running) is rebooting 5 of these 10 miners (a change sent while a miner restarts fails): wait for it to end`,
    );
    await expect(startRollout(redis, reboot(second), prefix2)).rejects.toThrow(`rollout ${r.rolloutId} (reboot, running) is rebooting 5 of these 10 miners: wait for it to end`);
    await expect(startRollout(redis, plan(2600, { targets: second, allowOverlap: true }), prefix2)).resolves.toBeDefined();
  });

  it('a failed rollout (it may be resumed) counts too; resuming one refuses while another changes its miners', async () => {
    const prefix = uniquePrefix('overlap-failed');
    const store = new RolloutStore(redis, prefix);
    const first = tf.inventory.targets.slice(0, 10);
    const second = tf.inventory.targets.slice(5, 15);
    // No worker runs; a step that kept failing ended the first rollout `failed`.
    const a = await startRollout(redis, plan(2500, { targets: first }), prefix);
    expect(await store.transition(a.rolloutId, ['running'], 'failed', { reason: 'wave 0 could not start: OOM' })).toBe(true);
    await expect(startRollout(redis, plan(2600, { targets: second }), prefix)).rejects.toThrow(`rollout ${a.rolloutId} (power-target, failed) already changes the tuner target of 5 of these 10 miners`);
    const b = await startRollout(redis, plan(2600, { targets: second, allowOverlap: true }), prefix);
    await expect(changeRolloutState(redis, a.rolloutId, 'resume', 'test', prefix)).rejects.toThrow(
      `rollout ${b.rolloutId} (power-target, running) has since started changing the tuner target of 5 of this rollout's miners: let it end or stop it (bos-fleet rollout abort ${b.rolloutId}) before resuming ${a.rolloutId}, or abort ${a.rolloutId}`,
    );
    expect((await store.status(a.rolloutId))?.state).toBe('failed');
    await changeRolloutState(redis, b.rolloutId, 'abort', 'test', prefix);
    await expect(changeRolloutState(redis, a.rolloutId, 'resume', 'test', prefix)).resolves.toBe('running');
  });

  it('an unfinished rollout behind more than a thousand finished ones still counts (only the newest 1,000 were looked at)', async () => {
    const prefix = uniquePrefix('overlap-old');
    const store = new RolloutStore(redis, prefix);
    const old = await startRollout(redis, plan(2500, { targets: tf.inventory.targets.slice(0, 10) }), prefix);
    await changeRolloutState(redis, old.rolloutId, 'pause', 'test', prefix);
    const header = await store.get(old.rolloutId);
    const write = redis.pipeline();
    for (let i = 0; i < 1_001; i++) {
      const id = `ro-finished-${i}`;
      write.set(`${prefix}:rollout:${id}`, JSON.stringify({ ...header, rolloutId: id })).hset(`${prefix}:rollout:${id}:state`, { state: 'completed', wave: '0', updatedAt: '' }).zadd(`${prefix}:rollouts`, Date.now() + 1_000 + i, id);
    }
    await write.exec();
    expect((await store.list(1_000)).includes(old.rolloutId)).toBe(false);
    await expect(startRollout(redis, plan(2600, { targets: tf.inventory.targets.slice(5, 15) }), prefix)).rejects.toThrow(`rollout ${old.rolloutId} (power-target, paused) already changes the tuner target of 5 of these 10 miners`);
  });
});

describe('a rollback audit entry', () => {
  it('counts the values it restores, most miners first, and folds more than ten distinct ones into one entry', async () => {
    const { specCounts, AUDIT_SPECS_MAX } = await import('../src/rollout/create.js');
    const targets = Array.from({ length: 30 }, (_, i) => ({ minerId: `m${i}`, host: `127.0.0.${i + 1}`, port: 50051, site: '', tags: [], credentials: 'default' }));
    const two = Object.fromEntries(targets.map((t, i) => [t.minerId, { kind: 'power-target' as const, watts: i < 20 ? 3000 : 2500 }]));
    expect(specCounts(targets, two, { kind: 'power-target', watts: 1 })).toEqual([
      { spec: { kind: 'power-target', watts: 3000 }, miners: 20 },
      { spec: { kind: 'power-target', watts: 2500 }, miners: 10 },
    ]);
    const each = Object.fromEntries(targets.map((t, i) => [t.minerId, { kind: 'power-target' as const, watts: 2000 + i }]));
    const folded = specCounts(targets, each, { kind: 'power-target', watts: 1 });
    expect(folded).toHaveLength(AUDIT_SPECS_MAX + 1);
    expect(folded.at(-1)).toEqual({ otherValues: 30 - AUDIT_SPECS_MAX, miners: 30 - AUDIT_SPECS_MAX });
  });
});

describe("a rollout's record and its miners", () => {
  it('the record read on every gate check holds no miners; a record written before the split (miners inline) still runs', async () => {
    const prefix = uniquePrefix('split');
    const rec = await withWorker(prefix, async () => {
      const r = await startRollout(redis, plan(2450, { waves: [1] }), prefix);
      expect((await waitForRollout(redis, r.rolloutId, prefix)).counts).toEqual({ OK: COUNT });
      return r;
    });
    const header = JSON.parse((await redis.get(`${prefix}:rollout:${rec.rolloutId}`))!) as Record<string, unknown>;
    expect(header).not.toHaveProperty('targets');
    expect((await new RolloutStore(redis, prefix).members(rec.rolloutId))?.targets).toEqual(tf.inventory.targets);

    // An older bos-fleet kept the miners inline, in one key: a worker of this version carries it on.
    const id = 'ro-legacy';
    const legacy: RolloutRecord = { ...(header as unknown as RolloutRecord), rolloutId: id, spec: { kind: 'power-target', watts: 2400 }, targets: tf.inventory.targets };
    await redis.set(`${prefix}:rollout:${id}`, JSON.stringify(legacy));
    await redis.hset(`${prefix}:rollout:${id}:state`, { state: 'running', wave: '-1', updatedAt: new Date().toISOString() });
    const control = new Queue(CONTROL_QUEUE, { connection: redis, prefix });
    await addWaveJob(control, id, 0, 0);
    await control.close();
    const report = await withWorker(prefix, async () => waitForRollout(redis, id, prefix));
    expect(report.counts).toEqual({ OK: COUNT });
    expect((await Promise.all(tf.fleet.miners.map(async (m) => (await tf.fleet.state(m.id)).powerTargetW))).every((w) => w === 2400)).toBe(true);
  });
});

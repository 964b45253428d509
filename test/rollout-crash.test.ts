// A change's worker killed between its write to the miner and its outcome: the job runs again, and the
// outcome still says the change was applied, with the miner's value from before the rollout (what a
// rollback restores) — not "unchanged" with the new value as "before".
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MutationData } from '../src/workers/ops/mutate.js';
import { RunStore } from '../src/fleet/run-store.js';
import { changeRolloutState, startRollout } from '../src/rollout/create.js';
import { waitForRollout } from '../src/rollout/wait.js';
import { rollbackPlanFor } from '../src/rollout/rollback.js';
import { waveRunId } from '../src/rollout/store.js';
import { exited, spawnCli, startCliFleet, type CliFleet, type FleetFiles } from './helpers/cli.js';
import { startWorker } from '../src/workers/worker.js';
import { FAST_CORE, type TestFleet } from './helpers/fleet.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';
import { until } from './helpers/until.js';

const COUNT = 12;
let cf: CliFleet;
let tf: TestFleet;
let redis: Redis;
let files: FleetFiles;
beforeAll(async () => {
  // Every reply takes 400 ms: a worker killed right after a write lands is still reading it back.
  ({ tf, redis, files } = cf = await startCliFleet(COUNT, '127.24.0.1', () => ({ slow: { latencyMs: 400 } })));
});
afterAll(() => cf.close());

describe('a change whose worker dies after writing to the miner', () => {
  it('reports the change as applied, with the value from before the rollout, so a rollback restores it', async () => {
    const prefix = uniquePrefix('crash');
    const before = new Map(await Promise.all(tf.fleet.miners.map(async (m) => [m.id, (await tf.fleet.state(m.id)).powerTargetW] as const)));
    const rec = await startRollout(
      redis,
      {
        operation: 'power-target',
        spec: { kind: 'power-target', watts: 2350 },
        targets: tf.inventory.targets,
        inventoryDigest: tf.inventory.digest,
        waves: [1],
        maxFailureRate: 0.5,
        minSample: 1,
        pauseBetweenMs: 0,
        actor: 'test',
      },
      prefix,
    );
    const args = ['worker', '--redis', redisUrl(), '--prefix', prefix, '--credentials', files.credentials, '--concurrency', '4', '--threads', '0', '--lock-ms', '2000'];
    const first = spawnCli(args);
    const written = async () => (await tf.fleet.mutations()).filter((m) => m.method === 'SetPowerTarget' && m.result === 'applied').map((m) => m.minerId);
    await until(async () => (await written()).length >= 1, 30_000, 5);
    first.kill('SIGKILL');
    await exited(first);
    const writtenAtKill = await written();
    const store = new RunStore(redis, prefix);
    const outcomesAtKill = new Set((await store.getOutcomes(waveRunId(rec.rolloutId, 0))).map((o) => o.minerId));
    const caught = writtenAtKill.filter((id) => !outcomesAtKill.has(id));
    expect(caught.length).toBeGreaterThan(0); // written, no outcome yet: the case under test

    const second = spawnCli(args);
    try {
      const report = await waitForRollout(redis, rec.rolloutId, prefix);
      expect(report.counts).toEqual({ OK: COUNT });
    } finally {
      second.kill('SIGTERM');
      await exited(second);
    }
    for (const o of await store.getOutcomes(waveRunId(rec.rolloutId, 0))) {
      expect({ miner: o.minerId, data: o.data as MutationData }).toEqual({
        miner: o.minerId,
        data: { change: 'applied', before: { powerTargetWatts: before.get(o.minerId) }, after: { powerTargetWatts: 2350 }, verified: true },
      });
    }
    const plan = await rollbackPlanFor(redis, rec.rolloutId, prefix);
    expect(plan.targets.map((t) => t.minerId).sort()).toEqual(tf.fleet.miners.map((m) => m.id).sort());
  }, 90_000);

  it('a change that failed after its write may have landed is rolled back too, to its journaled before', async () => {
    const prefix = uniquePrefix('uncertain');
    const [m0, ...rest] = tf.fleet.miners;
    const was = (await tf.fleet.state(m0!.id)).powerTargetW;
    // m0 applies the write but never answers it; once the write has landed it drops off the network,
    // so the read-back that would settle the change fails too: its job ends failed, the change made.
    await tf.fleet.setFaults(m0!.id, { lostReply: true });
    // Its job's later attempts (each reads first) fail too and open m0's breaker: short here, so the rollback soon gets through.
    const worker = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 4, credentials: tf.credentials, coreOptions: { ...FAST_CORE, breaker: { openMs: 1_000 } } });
    try {
      const plan = (spec: { kind: 'power-target'; watts: number }) => ({ operation: 'power-target' as const, spec, targets: tf.inventory.targets, inventoryDigest: tf.inventory.digest, waves: [1], maxFailureRate: 0.5, minSample: 1, pauseBetweenMs: 0, actor: 'test' });
      const rec = await startRollout(redis, plan({ kind: 'power-target', watts: 2400 }), prefix);
      await until(async () => (await tf.fleet.mutations()).some((m) => m.minerId === m0!.id && m.method === 'SetPowerTarget' && (m.request as { powerTarget: { watt: number } }).powerTarget.watt === 2400), 30_000, 5);
      await tf.fleet.setFaults(m0!.id, { refuse: true });
      const report = await waitForRollout(redis, rec.rolloutId, prefix);
      expect(report.counts['OK']).toBe(rest.length);
      const store = new RunStore(redis, prefix);
      const failed = (await store.getOutcomes(waveRunId(rec.rolloutId, 0))).find((o) => o.minerId === m0!.id)!;
      expect(failed).toMatchObject({ status: 'failed', code: 'OUTCOME_UNKNOWN', jobAttempts: 3 });

      const rb = await rollbackPlanFor(redis, rec.rolloutId, prefix);
      expect(rb.uncertain).toEqual([m0!.id]);
      expect(rb.targets).toHaveLength(COUNT);
      expect(rb.specByMiner[m0!.id]).toEqual({ kind: 'power-target', watts: was });

      await tf.fleet.setFaults(m0!.id, {});
      expect((await tf.fleet.state(m0!.id)).powerTargetW).toBe(2400); // the write had landed
      const back = await waitForRollout(redis, (await startRollout(redis, { ...plan(rb.rec.spec as { kind: 'power-target'; watts: number }), specByMiner: rb.specByMiner, targets: rb.targets, rollbackOf: rec.rolloutId }, prefix)).rolloutId, prefix);
      expect(back.counts).toEqual({ OK: COUNT });
      expect((await tf.fleet.state(m0!.id)).powerTargetW).toBe(was);
    } finally {
      await worker.close();
      await tf.fleet.setFaults(m0!.id, { slow: { latencyMs: 400 } });
    }
  }, 90_000);

  it('aborted after its worker died mid-change: a miner whose write landed is reported applied (rollback restores it), the rest cancelled, nothing written after', async () => {
    const prefix = uniquePrefix('abortcrash');
    const before = new Map(await Promise.all(tf.fleet.miners.map(async (m) => [m.id, (await tf.fleet.state(m.id)).powerTargetW] as const)));
    const plan = { operation: 'power-target' as const, spec: { kind: 'power-target' as const, watts: 2300 }, targets: tf.inventory.targets, inventoryDigest: tf.inventory.digest, waves: [1], maxFailureRate: 0.5, minSample: 1, pauseBetweenMs: 0, actor: 'test' };
    const rec = await startRollout(redis, plan, prefix);
    const args = ['worker', '--redis', redisUrl(), '--prefix', prefix, '--credentials', files.credentials, '--concurrency', '4', '--threads', '0', '--lock-ms', '2000'];
    const first = spawnCli(args);
    const written = async () => (await tf.fleet.mutations()).filter((m) => m.method === 'SetPowerTarget' && m.result === 'applied' && (m.request as { powerTarget: { watt: number } }).powerTarget.watt === 2300).map((m) => m.minerId);
    await until(async () => (await written()).length >= 1, 30_000, 5);
    first.kill('SIGKILL');
    await exited(first);
    // Writes the killed worker had already sent still land, within one reply latency (400 ms).
    await new Promise((r) => setTimeout(r, 1_000));
    const writtenAtKill = await written();
    const store = new RunStore(redis, prefix);
    const runId = waveRunId(rec.rolloutId, 0);
    const outcomesAtKill = new Set((await store.getOutcomes(runId)).map((o) => o.minerId));
    const caught = writtenAtKill.filter((id) => !outcomesAtKill.has(id));
    expect(caught.length).toBeGreaterThan(0); // written, no outcome yet: the case under test
    await changeRolloutState(redis, rec.rolloutId, 'abort', 'test', prefix);

    const second = spawnCli(args);
    try {
      await until(async () => (await store.getCounts(runId)).done >= COUNT, 30_000, 50);
    } finally {
      second.kill('SIGTERM');
      await exited(second);
    }
    expect(await written()).toEqual(writtenAtKill); // nothing written after the abort
    for (const o of await store.getOutcomes(runId)) {
      if (outcomesAtKill.has(o.minerId)) continue;
      if (caught.includes(o.minerId)) {
        expect({ miner: o.minerId, code: o.code, data: o.data }).toEqual({
          miner: o.minerId,
          code: 'OK',
          data: { change: 'applied', before: { powerTargetWatts: before.get(o.minerId) }, after: { powerTargetWatts: 2300 }, verified: true },
        });
      } else {
        expect({ miner: o.minerId, code: o.code }).toEqual({ miner: o.minerId, code: 'CANCELLED' });
        expect((await tf.fleet.state(o.minerId)).powerTargetW).toBe(before.get(o.minerId));
      }
    }
    const rb = await rollbackPlanFor(redis, rec.rolloutId, prefix);
    expect(rb.targets.map((t) => t.minerId).sort()).toEqual(writtenAtKill.sort());
  }, 90_000);
});

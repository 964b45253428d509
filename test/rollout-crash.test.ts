// A change's worker killed between its write to the miner and its outcome: the job runs again, and the
// outcome still says the change was applied, with the miner's value from before the rollout (what a
// rollback restores) — not "unchanged" with the new value as "before".
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MutationData } from '../src/workers/ops/mutate.js';
import { RunStore } from '../src/fleet/run-store.js';
import { rollbackPlanFor, startRollout, waitForRollout } from '../src/rollout/create.js';
import { waveRunId } from '../src/rollout/store.js';
import { inventoryCsv } from '../src/sim/plan.js';
import { exited, spawnCli, writeFleetFiles } from './helpers/cli.js';
import { startTestFleet, type TestFleet } from './helpers/fleet.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';
import { until } from './helpers/until.js';

const COUNT = 12;
let tf: TestFleet;
let redis: Redis;
let files: ReturnType<typeof writeFleetFiles>;
beforeAll(async () => {
  // Every reply takes 400 ms: a worker killed right after a write lands is still reading it back.
  tf = await startTestFleet(COUNT, '127.24.0.1', () => ({ slow: { latencyMs: 400 } }));
  redis = new Redis(redisUrl());
  files = writeFleetFiles(inventoryCsv(tf.fleet.miners.map((m, index) => ({ ...m, index }))));
});
afterAll(async () => {
  redis.disconnect();
  await tf.fleet.close();
});

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
});

// Each mutation kind against the simulator: before/after, unchanged on repeat, verification, reboot.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError } from '../src/core/index.js';
import type { FleetCore } from '../src/core/fleet-core.js';
import { mutateMiner, type MutateContext } from '../src/workers/ops/mutate.js';
import type { MutationSpec } from '../src/workers/ops/mutation-spec.js';
import { simTarget, testCore } from './helpers/core.js';
import { startTestFleet, type TestFleet } from './helpers/fleet.js';

let tf: TestFleet;
let core: FleetCore;
beforeAll(async () => {
  tf = await startTestFleet(3, '127.17.0.1', () => ({}), { rebootDownMs: 400 });
  core = testCore();
});
afterAll(async () => {
  core.close();
  await tf.fleet.close();
});

function ctx(i: number, extra: Partial<MutateContext> = {}): MutateContext {
  return { target: tf.inventory.targets[i]!, credentials: tf.credentials, dryRun: false, callOpts: {}, rebootWaitMs: 5_000, sharedNowMs: Date.now, ...extra };
}
const miner = (i: number) => core.miner(simTarget(tf.fleet.miners[i]!.id, tf.fleet.miners[i]!.host));
const run = (i: number, spec: MutationSpec, extra: Partial<MutateContext> = {}) => mutateMiner(miner(i), spec, ctx(i, extra));
const writes = async (i: number, method: string) => (await tf.fleet.mutations(tf.fleet.miners[i]!.id)).filter((r) => r.method === method).length;

describe('mutations', () => {
  it('pause and resume: applied once, then unchanged; status verified', async () => {
    expect(await run(0, { kind: 'pause' })).toEqual({ change: 'applied', before: { minerStatus: 'NORMAL' }, after: { minerStatus: 'PAUSED' }, verified: true });
    expect(await run(0, { kind: 'pause' })).toMatchObject({ change: 'unchanged' });
    expect(await writes(0, 'PauseMining')).toBe(1);
    expect(await run(0, { kind: 'resume' })).toMatchObject({ change: 'applied', after: { minerStatus: 'NORMAL' } });
    expect((await tf.fleet.state(tf.fleet.miners[0]!.id)).status).toBe('MINER_STATUS_NORMAL');
  });

  it('locate on / off', async () => {
    expect(await run(0, { kind: 'locate', enable: true })).toMatchObject({ change: 'applied', before: { locateOn: false }, after: { locateOn: true } });
    expect((await tf.fleet.state(tf.fleet.miners[0]!.id)).locate).toBe(true);
    expect(await run(0, { kind: 'locate', enable: false })).toMatchObject({ change: 'applied', after: { locateOn: false } });
  });

  it('hashrate target inside the range applies; outside is INVALID_REQUEST with nothing sent', async () => {
    const state = await tf.fleet.state(tf.fleet.miners[1]!.id);
    const ths = Math.round(state.model.nominalThs * 0.9);
    expect(await run(1, { kind: 'hashrate-target', terahashPerSecond: ths })).toMatchObject({ change: 'applied', after: { hashrateTargetThs: ths } });
    const err = await run(1, { kind: 'hashrate-target', terahashPerSecond: state.model.nominalThs * 3 }).catch((e: unknown) => FleetError.from(e));
    expect(err).toMatchObject({ code: 'INVALID_REQUEST', context: { mayHaveReachedMiner: false } });
    expect(await writes(1, 'SetHashrateTarget')).toBe(1);
  });

  it('dry run reports would-apply and writes nothing', async () => {
    expect(await run(1, { kind: 'power-target', watts: 2100 }, { dryRun: true })).toMatchObject({ change: 'would-apply', after: { powerTargetWatts: 2100 }, verified: false });
    expect(await writes(1, 'SetPowerTarget')).toBe(0);
  });

  it('reboot waits for the miner to come back; run again, it finds the reboot done and does not reboot twice', async () => {
    const requestedAt = Date.now();
    const data = await run(2, { kind: 'reboot', notBeforeMs: requestedAt });
    expect(data).toMatchObject({ change: 'applied', before: { bootedAfterRequest: false }, after: { bootedAfterRequest: true }, verified: true });
    expect((await tf.fleet.state(tf.fleet.miners[2]!.id)).bootedAtMs).toBeGreaterThan(requestedAt);
    expect(await run(2, { kind: 'reboot', notBeforeMs: requestedAt })).toMatchObject({ change: 'unchanged' });
    expect(await writes(2, 'Reboot')).toBe(1);
    expect(core.breaker(miner(2).key).state).toBe('CLOSED'); // the expected outage did not count against it
  });

  it("a reboot compares boot times on the shared clock: a worker whose own clock is 10 min behind Redis's still reboots once", async () => {
    // The wave's start is on Redis's clock, here 10 min ahead of this host's; the worker adds its offset.
    // (Miner 0: up for long, not just rebooted — a miner reports its uptime in whole seconds.)
    const skew = 600_000;
    const requestedAt = Date.now() + skew;
    const before = await writes(0, 'Reboot');
    const data = await run(0, { kind: 'reboot', notBeforeMs: requestedAt }, { sharedNowMs: () => Date.now() + skew });
    expect(data).toMatchObject({ change: 'applied', before: { bootedAfterRequest: false }, after: { bootedAfterRequest: true }, verified: true });
    expect(await run(0, { kind: 'reboot', notBeforeMs: requestedAt }, { sharedNowMs: () => Date.now() + skew })).toMatchObject({ change: 'unchanged' });
    expect(await writes(0, 'Reboot')).toBe(before + 1);
  });

  it('a write whose reply was lost is settled by the read-back: applied, written once', async () => {
    const id = tf.fleet.miners[1]!.id;
    const before = await writes(1, 'SetPowerTarget');
    await tf.fleet.setFaults(id, { lostReply: true });
    try {
      const result = await run(1, { kind: 'power-target', watts: 2300 });
      expect(result).toMatchObject({ change: 'applied', after: { powerTargetWatts: 2300 }, verified: true });
    } finally {
      await tf.fleet.setFaults(id, {});
    }
    expect(await writes(1, 'SetPowerTarget')).toBe(before + 1);
    expect((await tf.fleet.state(id)).powerTargetW).toBe(2300);
  });

  it('a write that never landed is reported as such (retryable), not as applied', async () => {
    const id = tf.fleet.miners[1]!.id;
    await tf.fleet.setFaults(id, { dropWrites: true });
    try {
      const err = await run(1, { kind: 'power-target', watts: 2400 }).catch((e: unknown) => FleetError.from(e));
      expect(err).toMatchObject({ code: 'MINER_TIMEOUT', retryable: true });
      expect((err as FleetError).message).toMatch(/read-back shows the change was not applied$/);
      expect((err as FleetError).message).not.toContain('may or may not'); // the read-back settled it
    } finally {
      await tf.fleet.setFaults(id, {});
    }
    expect((await tf.fleet.state(id)).powerTargetW).toBe(2300);
  });

  it('a reboot the miner never carries out (it answers reads all along, with its old boot time) is said not done once it stayed up past rebootStartMs, not after the whole rebootWaitMs', async () => {
    const id = tf.fleet.miners[1]!.id;
    const bootedAt = (await tf.fleet.state(id)).bootedAtMs;
    await tf.fleet.setFaults(id, { dropWrites: true });
    try {
      const started = Date.now();
      const err = await run(1, { kind: 'reboot', notBeforeMs: started }, { rebootWaitMs: 60_000, rebootStartMs: 1_500 }).catch((e: unknown) => FleetError.from(e));
      expect(err).toMatchObject({ code: 'MINER_TIMEOUT', retryable: true });
      expect((err as FleetError).message).toMatch(/read-back shows the change was not applied$/);
      expect(Date.now() - started).toBeLessThan(15_000);
    } finally {
      await tf.fleet.setFaults(id, {});
    }
    expect((await tf.fleet.state(id)).bootedAtMs).toBe(bootedAt);
  });
});

// End to end on a real Redis and the simulator: producer → BullMQ → workers → one outcome per miner.
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { QUEUE_NAME } from '../src/fleet/keys.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunStore } from '../src/fleet/run-store.js';
import type { Outcome } from '../src/fleet/outcome.js';
import type { PollSnapshot } from '../src/workers/ops/poll.js';
import { runLocal } from '../src/producer/run-local.js';
import { FAST_CORE, startTestFleet, type TestFleet } from './helpers/fleet.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';
import type { MinerFaults } from '../src/sim/faults.js';

// Miner i's fault and the code its outcome must carry.
const PLAN: [MinerFaults, string][] = [
  [{}, 'OK'],
  [{ refuse: true }, 'MINER_UNREACHABLE'],
  [{ badAuth: true }, 'MINER_AUTH_FAILED'],
  [{ oldApi: true }, 'OK'],
  [{ flaky: { failFirst: 2 } }, 'OK'],
  [{ blackhole: true }, 'MINER_TIMEOUT'],
  [{ garbage: true }, 'PROTOCOL_ERROR'],
  [{}, 'OK'],
];
const COUNT = 40;
const planOf = (i: number) => PLAN[i % PLAN.length]!;

let tf: TestFleet;
let redis: Redis;
beforeAll(async () => {
  tf = await startTestFleet(COUNT, '127.10.0.1', (i) => planOf(i)[0]);
  redis = new Redis(redisUrl());
});
afterAll(async () => {
  redis.disconnect();
  await tf.fleet.close();
});

describe.each([0, 2])('poll with --threads %i', (threads) => {
  it('gives every miner exactly one outcome with the code of its fault, and true data', async () => {
    const prefix = uniquePrefix('pipe');
    const { record, summary } = await runLocal({
      redisUrl: redisUrl(),
      prefix,
      inventory: tf.inventory,
      operation: 'poll',
      credentials: tf.credentials,
      threads,
      concurrency: 16,
      jobAttempts: 2,
      jobBackoffMs: 50,
      coreOptions: FAST_CORE,
    });
    const store = new RunStore(redis, prefix);
    const outcomes = await store.getOutcomes(record.runId);
    expect(outcomes.length).toBe(COUNT);
    const byId = new Map(outcomes.map((o) => [o.minerId, o] as const));
    expect(byId.size).toBe(COUNT);
    for (let i = 0; i < COUNT; i++) {
      const m = tf.fleet.miners[i]!;
      expect({ id: m.id, code: byId.get(m.id)?.code }).toEqual({ id: m.id, code: planOf(i)[1] });
    }
    expect(summary.done).toBe(COUNT);
    expect(summary.counts['OK']).toBe(20);

    // A failed outcome carries a suggestion; retryable failures used both job attempts.
    const refused = byId.get(tf.fleet.miners[1]!.id) as Outcome;
    expect(refused).toMatchObject({ status: 'failed', jobAttempts: 2, transport: 'plaintext' });
    expect(refused.error?.suggestion).toMatch(/port 50051/);
    expect(byId.get(tf.fleet.miners[2]!.id)?.jobAttempts).toBe(1); // auth failure is not retried

    // Values in the snapshot equal what the simulator served.
    const healthy = byId.get(tf.fleet.miners[0]!.id) as Outcome & { data: PollSnapshot };
    const state = await tf.fleet.state(tf.fleet.miners[0]!.id);
    expect(healthy.data).toMatchObject({
      apiVersion: '1.11.0',
      model: state.model.name,
      hostname: state.hostname,
      macAddress: state.macAddress,
      serialNumber: state.serialNumber,
      minerStatus: 'NORMAL',
      hashrate: { nominalGhs: state.nominalGhs },
      power: { targetWatts: state.powerTargetW },
      unsupported: [],
    });
    expect(healthy.data.hashrate.realGhs5m).toBeCloseTo(state.baseRealGhs, 3);
    expect(healthy.data.fans.map((f) => f.rpm)).toEqual(state.fanRpm);
    expect(healthy.data.hashboards.map((b) => b.chipTempC)).toEqual(state.hashboards.map((b) => b.chipTempC));
    expect(healthy.data.pools[0]).toMatchObject({ url: state.poolGroups[0]!.pools[0]!.url, active: true, acceptedShares: state.acceptedShares });
    expect(healthy.data.errors).toEqual(state.errors.map((e) => ({ message: e.message, codes: e.codes.map((c) => c.code) })));

    // API 1.0.0 polls OK with GetErrors listed as unsupported.
    const old = byId.get(tf.fleet.miners[3]!.id) as Outcome & { data: PollSnapshot };
    expect(old.data).toMatchObject({ apiVersion: '1.0.0', errors: null, unsupported: ['GetErrors'] });

    // No password anywhere in Redis.
    const dump = JSON.stringify(await redis.keys(`${prefix}*`)) + JSON.stringify(outcomes);
    expect(dump).not.toContain('sim-password');
  });
});

describe('a job attempt skipped by an open breaker', () => {
  it("reports the earlier attempt's failure: its code, in-call attempts and time, not the skip's zero", async () => {
    const prefix = uniquePrefix('skip');
    // Miner 1 refuses connections, miner 5 is blackholed. Two failures open a breaker, so each miner's
    // first job attempt (two in-call attempts) opens its breaker and the second job attempt is skipped.
    const inventory = { ...tf.inventory, targets: [1, 5].map((i) => tf.inventory.targets[i]!) };
    const { record } = await runLocal({
      redisUrl: redisUrl(),
      prefix,
      inventory,
      operation: 'poll',
      credentials: tf.credentials,
      threads: 0,
      concurrency: 4,
      jobAttempts: 2,
      jobBackoffMs: 50,
      coreOptions: { ...FAST_CORE, breaker: { failureThreshold: 2 } },
      keepFinishedJobs: 1,
    });
    // BullMQ keeps a bounded number of failed jobs (their outcomes are the run's): here 1 of the 2.
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
    expect((await queue.getJobCounts('failed'))['failed']).toBe(1);
    await queue.close();
    const outcomes = await new RunStore(redis, prefix).getOutcomes(record.runId);
    const byId = new Map(outcomes.map((o) => [o.minerId, o] as const));
    const refused = byId.get(tf.fleet.miners[1]!.id) as Outcome;
    const blackholed = byId.get(tf.fleet.miners[5]!.id) as Outcome;
    expect(refused).toMatchObject({ code: 'MINER_UNREACHABLE', attempts: FAST_CORE.retry.maxAttempts, jobAttempts: 2 });
    expect(blackholed).toMatchObject({ code: 'MINER_TIMEOUT', attempts: FAST_CORE.retry.maxAttempts, jobAttempts: 2 });
    // Each of its two in-call attempts waited out the connect timeout.
    expect(blackholed.durationMs).toBeGreaterThanOrEqual(FAST_CORE.retry.maxAttempts * FAST_CORE.connectTimeoutMs);
    for (const o of [refused, blackholed]) expect(o.error?.message).toMatch(/\(next attempt skipped: circuit open\)$/);
  });
});

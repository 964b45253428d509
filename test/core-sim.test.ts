// The core against the simulator: each fault kind → exact code, attempts and a time bound.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError, type ErrorCode } from '../src/core/index.js';
import { loopbackAddresses } from '../src/sim/addresses.js';
import type { MinerFaults } from '../src/sim/faults.js';
import { SimFleet } from '../src/sim/fleet.js';
import { simTarget, testCore } from './helpers/core.js';

interface Row {
  name: string;
  faults: MinerFaults;
  code: ErrorCode | 'OK';
  attempts: number;
  maxMs: number;
}

const ROWS: Row[] = [
  { name: 'healthy', faults: {}, code: 'OK', attempts: 1, maxMs: 1_000 },
  { name: 'refuse', faults: { refuse: true }, code: 'MINER_UNREACHABLE', attempts: 3, maxMs: 1_000 },
  { name: 'blackhole', faults: { blackhole: true }, code: 'MINER_TIMEOUT', attempts: 3, maxMs: 2_500 },
  { name: 'hang', faults: { hang: true }, code: 'MINER_TIMEOUT', attempts: 3, maxMs: 3_000 },
  { name: 'slow', faults: { slow: { latencyMs: 150 } }, code: 'OK', attempts: 1, maxMs: 2_000 },
  { name: 'slow-beyond-deadline', faults: { slow: { latencyMs: 2_000 } }, code: 'MINER_TIMEOUT', attempts: 3, maxMs: 3_500 },
  { name: 'flaky', faults: { flaky: { failFirst: 2 } }, code: 'OK', attempts: 3, maxMs: 1_000 },
  { name: 'bad-auth', faults: { badAuth: true }, code: 'MINER_AUTH_FAILED', attempts: 1, maxMs: 1_000 },
  { name: 'oversized', faults: { oversized: { bytes: 1024 * 1024 } }, code: 'RESPONSE_TOO_LARGE', attempts: 1, maxMs: 1_000 },
  { name: 'malformed', faults: { malformed: true }, code: 'PROTOCOL_ERROR', attempts: 1, maxMs: 1_000 },
  { name: 'garbage', faults: { garbage: true }, code: 'PROTOCOL_ERROR', attempts: 1, maxMs: 1_000 },
  { name: 'overloaded', faults: { overloaded: true }, code: 'MINER_OVERLOADED', attempts: 3, maxMs: 1_000 },
  { name: 'old-api', faults: { oldApi: true }, code: 'OK', attempts: 1, maxMs: 1_000 },
];

const hosts = loopbackAddresses('127.5.0.1', ROWS.length);
let fleet: SimFleet;
beforeAll(async () => {
  fleet = await SimFleet.start({ miners: ROWS.map((r, index) => ({ id: r.name, index, host: hosts[index]!, port: 50051, faults: r.faults })) });
});
afterAll(() => fleet.close());

describe('core × simulated faults', () => {
  it.each(ROWS.map((r, i) => [r.name, r, i] as const))('%s', async (_name, row, i) => {
    const core = testCore();
    const miner = core.miner(simTarget(row.name, hosts[i]!));
    const started = Date.now();
    let code: string = 'OK';
    let attempts = 0;
    try {
      await miner.getMinerStats();
      attempts = miner.stats.maxAttempts;
    } catch (err) {
      const e = FleetError.from(err);
      code = e.code;
      attempts = e.context.attempts ?? -1;
      expect(e.context.minerId).toBe(row.name);
      expect(e.message).not.toContain('sim-password');
    }
    const elapsed = Date.now() - started;
    core.close();
    expect({ code, attempts }).toEqual({ code: row.code, attempts: row.attempts });
    expect(elapsed).toBeLessThan(row.maxMs);
  });
});

// A FleetCore tuned for tests: short deadlines and backoffs so failure rows finish quickly.
import { FleetCore, type CoreOptionsInput } from '../../src/core/index.js';
import type { MinerTarget } from '../../src/core/miner-client.js';
import { SIM_PASSWORD, SIM_USERNAME } from '../../src/sim/miner.js';
import { loopbackAddresses } from '../../src/sim/addresses.js';
import type { MinerFaults } from '../../src/sim/faults.js';

export const TEST_CORE_OPTIONS: CoreOptionsInput = {
  connectTimeoutMs: 300,
  readTimeoutMs: 600,
  mutationTimeoutMs: 600,
  loginTimeoutMs: 600,
  callBudgetMs: 3_000,
  retry: { maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 50 },
  breaker: { failureThreshold: 16 },
};

export function testCore(overrides: CoreOptionsInput = {}): FleetCore {
  return new FleetCore({ ...TEST_CORE_OPTIONS, ...overrides });
}

export function simTarget(id: string, host: string, port = 50051): MinerTarget {
  return { id, host, port, credentials: { username: SIM_USERNAME, password: SIM_PASSWORD } };
}

/** One simulated miner per name, each on its own loopback address from `base`: a name's host, and the SimFleet specs (faults by name). */
export function namedMiners<N extends string>(names: readonly N[], base: string) {
  const hosts = loopbackAddresses(base, names.length);
  return {
    host: (name: N) => hosts[names.indexOf(name)]!,
    specs: (faultsOf: (name: N) => MinerFaults = () => ({})) => names.map((id, index) => ({ id, index, host: hosts[index]!, port: 50051, faults: faultsOf(id) })),
  };
}

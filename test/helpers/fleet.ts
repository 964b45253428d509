// Test fleets: a simulated fleet plus the matching inventory and credentials.
import { SimFleet, type SimTlsOptions } from '../../src/sim/fleet.js';
import type { MinerFaults } from '../../src/sim/faults.js';
import { loopbackAddresses } from '../../src/sim/addresses.js';
import { SIM_PASSWORD, SIM_USERNAME } from '../../src/sim/miner.js';
import { inventoryCsv } from '../../src/sim/plan.js';
import { parseInventory, type Inventory } from '../../src/producer/inventory.js';
import type { CredentialProfiles } from '../../src/fleet/credentials.js';
import type { RolloutPlan } from '../../src/rollout/create.js';
import { Redis, type RedisOptions } from 'ioredis';
import { redisUrl } from './redis.js';

export interface TestFleet {
  fleet: SimFleet;
  inventory: Inventory;
  credentials: CredentialProfiles;
}

/** `faultsOf(i)` gives miner i its faults; addresses start at `base`. */
export async function startTestFleet(count: number, base: string, faultsOf: (i: number) => MinerFaults = () => ({}), opts: { rebootDownMs?: number; tls?: SimTlsOptions } = {}): Promise<TestFleet> {
  const hosts = loopbackAddresses(base, count);
  const fleet = await SimFleet.start({
    miners: hosts.map((host, index) => ({ id: `m${String(index).padStart(4, '0')}`, index, host, port: 50051, faults: faultsOf(index) })),
    ...(opts.rebootDownMs ? { rebootDownMs: opts.rebootDownMs } : {}),
    ...(opts.tls ? { tls: opts.tls } : {}),
  });
  const inventory = parseInventory(inventoryCsv(fleet.miners.map((m, index) => ({ ...m, index }))), `${base}.csv`);
  return { fleet, inventory, credentials: new Map([['default', { username: SIM_USERNAME, password: SIM_PASSWORD }]]) };
}

/** A test fleet and a client of the test Redis, stopped together. */
export interface RedisFleet {
  tf: TestFleet;
  redis: Redis;
  /** Disconnects the client and stops the fleet. */
  close(): Promise<void>;
}

/** A test fleet (see startTestFleet) and a client of the test Redis (by default `maxRetriesPerRequest: null`, as BullMQ needs). */
export async function startRedisFleet(
  count: number,
  base: string,
  faultsOf?: (i: number) => MinerFaults,
  redisOptions: RedisOptions = { maxRetriesPerRequest: null },
  fleetOptions: { rebootDownMs?: number } = {},
): Promise<RedisFleet> {
  const tf = await startTestFleet(count, base, faultsOf, fleetOptions);
  const redis = new Redis(redisUrl(), redisOptions);
  return {
    tf,
    redis,
    close: async () => {
      redis.disconnect();
      await tf.fleet.close();
    },
  };
}

/** Short deadlines and job backoffs so failing miners settle quickly in tests. */
export const FAST_CORE = {
  connectTimeoutMs: 400,
  readTimeoutMs: 800,
  mutationTimeoutMs: 800,
  loginTimeoutMs: 800,
  callBudgetMs: 3_000,
  retry: { maxAttempts: 2, baseDelayMs: 10, maxDelayMs: 50 },
};

/** How many times each miner got an applied `method` write (optionally only those matching). */
export async function appliedWritesPerMiner(fleet: SimFleet, method: string, match: (request: unknown) => boolean = () => true): Promise<Map<string, number>> {
  const perMiner = new Map<string, number>();
  for (const w of await fleet.mutations()) {
    if (w.method === method && w.result === 'applied' && match(w.request)) perMiner.set(w.minerId, (perMiner.get(w.minerId) ?? 0) + 1);
  }
  return perMiner;
}

/** A power-target rollout of the whole test fleet in one wave (5% gate over 10 outcomes, no pause), with `extra` over it. */
export function powerTargetPlan(tf: TestFleet, watts: number, extra: Partial<RolloutPlan> = {}): RolloutPlan {
  return {
    operation: 'power-target',
    spec: { kind: 'power-target', watts },
    targets: tf.inventory.targets,
    inventoryDigest: tf.inventory.digest,
    waves: [1],
    maxFailureRate: 0.05,
    minSample: 10,
    pauseBetweenMs: 0,
    actor: 'test',
    ...extra,
  };
}

/** Runs `body` with `faults` on the given miners, and clears them after, whatever happens. */
export async function withFaults<T>(fleet: SimFleet, minerIds: readonly string[], faults: MinerFaults, body: () => Promise<T>): Promise<T> {
  for (const id of minerIds) await fleet.setFaults(id, faults);
  try {
    return await body();
  } finally {
    for (const id of minerIds) await fleet.setFaults(id, {});
  }
}

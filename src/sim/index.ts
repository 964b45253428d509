// Starts a simulated fleet: in this process when small, across shard processes when large.
import { SimCluster, MINERS_PER_SHARD } from './cluster.js';
import type { FleetControl } from './control.js';
import { SimFleet, type SimFleetOptions } from './fleet.js';
import { planFleet, type FleetPlanOptions } from './plan.js';

export interface StartSimOptions extends FleetPlanOptions, Omit<SimFleetOptions, 'miners'> {
  /** Force shard processes (default: only above MINERS_PER_SHARD miners). */
  sharded?: boolean;
}

export async function startSimFleet(opts: StartSimOptions): Promise<FleetControl> {
  const miners = planFleet(opts);
  const fleetOpts: SimFleetOptions = { ...opts, miners };
  if (opts.sharded || miners.length > MINERS_PER_SHARD) return SimCluster.start(fleetOpts);
  return SimFleet.start(fleetOpts);
}

export { SimFleet, SimCluster, planFleet };
export type { FleetControl };
export { inventoryCsv, minerId } from './plan.js';
export { parseFaultSpec, type MinerFaults } from './faults.js';
export { SIM_USERNAME, SIM_PASSWORD } from './miner.js';

// Turns "N miners from base address X with fault mix Y" into per-miner specs and an inventory.
import { loopbackAddresses } from './addresses.js';
import { assignFaults, parseFaultSpec } from './faults.js';
import type { SimMinerSpec } from './fleet.js';

export interface FleetPlanOptions {
  miners: number;
  base?: string;
  port?: number;
  /** e.g. `offline=2%,slow=5%:800ms,flaky=3%,old-api=10%` */
  faults?: string;
  seed?: number;
}

export const DEFAULT_BASE = '127.1.0.1';
export const DEFAULT_PORT = 50051;

export function minerId(index: number): string {
  return `miner-${String(index + 1).padStart(5, '0')}`;
}

export function planFleet(opts: FleetPlanOptions): SimMinerSpec[] {
  if (!Number.isInteger(opts.miners) || opts.miners < 1) throw new Error(`sim: --miners must be a positive integer, got ${opts.miners}`);
  const hosts = loopbackAddresses(opts.base ?? DEFAULT_BASE, opts.miners);
  const faults = assignFaults(parseFaultSpec(opts.faults ?? ''), opts.miners, opts.seed ?? 1);
  return hosts.map((host, index) => ({ id: minerId(index), index, host, port: opts.port ?? DEFAULT_PORT, faults: faults.get(index) ?? {} }));
}

/** The inventory CSV a farm would keep for these miners (see the inventory format in the README). */
export function inventoryCsv(miners: readonly { id: string; host: string; port: number; index?: number }[]): string {
  const rows = miners.map((m, i) => {
    const idx = m.index ?? i;
    const site = idx % 2 === 0 ? 'site-a' : 'site-b';
    return `${m.id},${m.host},${m.port},${site},rack-${Math.floor(idx / 40) + 1};sim,default`;
  });
  return ['id,host,port,site,tags,credentials', ...rows].join('\n') + '\n';
}

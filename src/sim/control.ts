// The control surface of a simulated fleet, the same whether it runs in this process or in shards.
import type { MinerFaults } from './faults.js';
import type { SimMinerState } from './miner.js';

export interface SimMinerInfo {
  id: string;
  host: string;
  port: number;
}

export interface MutationRecord {
  minerId: string;
  method: string;
  request: unknown;
  atMs: number;
  result: 'applied' | 'rejected';
}

export interface FleetControl {
  readonly miners: readonly SimMinerInfo[];
  state(minerId: string): Promise<SimMinerState>;
  setFaults(minerId: string, faults: MinerFaults): Promise<void>;
  mutations(minerId?: string): Promise<MutationRecord[]>;
  callCounts(minerId: string): Promise<Record<string, number>>;
  expireSessions(minerId?: string): Promise<void>;
  reboot(minerId: string, downMs: number): Promise<void>;
  dropConnections(minerId: string): Promise<void>;
  /** Sends `count` status messages (each padded by `padBytes`) to the miner's open status streams. */
  floodStatus(minerId: string, count: number, padBytes?: number): Promise<void>;
  close(): Promise<void>;
}

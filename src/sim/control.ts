// The control surface of a simulated fleet, the same whether it runs in this process or in shards.
import type { MinerFaults } from './faults.js';
import type { SimMinerState } from './miner.js';
import type { PingPolicy } from './ping-policy.js';

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
  /** Another machine now answers at the miner's address (a DHCP lease moved): its MAC is `macAddress`, its serial and hostname others. */
  replaceMachine(minerId: string, macAddress: string): Promise<void>;
  /** Sends `count` status messages (each padded by `padBytes`) to the miner's open status streams. */
  floodStatus(minerId: string, count: number, padBytes?: number): Promise<void>;
  close(): Promise<void>;
}

// What a fleet is started with.
export interface SimMinerSpec extends SimMinerInfo {
  index: number;
  faults: MinerFaults;
}

export interface SimTlsOptions {
  keyPem: Buffer;
  certPem: Buffer;
  /** CA that client certificates must chain to; set it to require mTLS. */
  clientCaPem?: Buffer;
}

export interface SimFleetOptions {
  miners: SimMinerSpec[];
  seed?: number;
  /** Session inactivity timeout (real miners: 3600 s). */
  sessionTtlMs?: number;
  /** How long a miner stays unreachable after Reboot. */
  rebootDownMs?: number;
  tls?: SimTlsOptions;
  /** Enforce gRPC-core's keepalive policy (GOAWAY too_many_pings) on every connection. */
  pingPolicy?: PingPolicy;
}

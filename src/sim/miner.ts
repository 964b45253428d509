// The state of one simulated Braiins OS miner and the semantics of its reads and mutations.
import { near, pick, seededRandom } from './prng.js';
import { MINER_MODELS, type MinerModelSpec } from './models.js';
import type { MinerFaults } from './faults.js';

export type MinerStatusName =
  | 'MINER_STATUS_NOT_STARTED'
  | 'MINER_STATUS_NORMAL'
  | 'MINER_STATUS_PAUSED';

export interface ApiVersionTriple {
  major: number;
  minor: number;
  patch: number;
}

export interface SimPoolConfig {
  uid: string;
  url: string;
  user: string;
  password?: string;
  enabled: boolean;
}

export interface SimPoolGroup {
  uid: string;
  name: string;
  quota?: number;
  fixedShareRatio?: number;
  pools: SimPoolConfig[];
}

export interface SimHashboard {
  id: string;
  enabled: boolean;
  chipTempC: number;
  boardTempC: number;
  hashrateGhs: number;
  voltageV: number;
  frequencyHz: number;
  serialNumber: string;
}

export interface SimMinerError {
  timestamp: string;
  message: string;
  codes: { code: string; reason: string; hint: string }[];
}

/** Everything a simulated miner serves. Plain data: it crosses process boundaries as JSON. */
export interface SimMinerState {
  id: string;
  index: number;
  host: string;
  port: number;
  model: MinerModelSpec;
  uid: string;
  serialNumber: string;
  macAddress: string;
  hostname: string;
  username: string;
  password: string;
  apiVersion: ApiVersionTriple;
  firmware: string;
  status: MinerStatusName;
  bootedAtMs: number;
  miningSinceMs: number;
  powerTargetW: number;
  hashrateTargetThs: number;
  tunerMode: 'TUNER_MODE_POWER_TARGET' | 'TUNER_MODE_HASHRATE_TARGET';
  nominalGhs: number;
  /** Hashrate at the default power target; the served rate scales with the target. */
  baseRealGhs: number;
  efficiencyNoise: number;
  fanRpm: number[];
  hashboards: SimHashboard[];
  poolGroups: SimPoolGroup[];
  acceptedShares: number;
  rejectedShares: number;
  locate: boolean;
  errors: SimMinerError[];
  faults: MinerFaults;
}

export const API_LATEST: ApiVersionTriple = { major: 1, minor: 11, patch: 0 };
export const API_OLD: ApiVersionTriple = { major: 1, minor: 0, patch: 0 };

/** Credentials every simulated miner accepts unless it has the `bad-auth` fault. */
export const SIM_USERNAME = 'root';
export const SIM_PASSWORD = 'sim-password';

export function createMinerState(opts: {
  id: string;
  index: number;
  host: string;
  port: number;
  faults: MinerFaults;
  seed: number;
  nowMs: number;
}): SimMinerState {
  const random = seededRandom(opts.seed * 7919 + opts.index);
  const model = pick(random, MINER_MODELS);
  const nominalGhs = model.nominalThs * 1000;
  const baseRealGhs = near(random, nominalGhs, 0.03);
  const uptimeS = Math.floor(3600 + random() * 30 * 86400);
  const hex = (n: number) => n.toString(16).padStart(2, '0');
  const i = opts.index;
  const boards = [0, 1, 2].map((b) => ({
    id: String(b),
    enabled: true,
    chipTempC: Math.round(near(random, 72, 0.1) * 10) / 10,
    boardTempC: Math.round(near(random, 58, 0.1) * 10) / 10,
    hashrateGhs: baseRealGhs / 3,
    voltageV: Math.round(near(random, 13.2, 0.02) * 100) / 100,
    frequencyHz: Math.round(near(random, 525e6, 0.05)),
    serialNumber: `HB${String(i).padStart(6, '0')}${b}`,
  }));
  const errors: SimMinerError[] =
    random() < 0.05
      ? [
          {
            timestamp: new Date(opts.nowMs - 600_000).toISOString(),
            message: 'Hashboard 1 chip temperature above warning threshold',
            codes: [{ code: 'HB-TEMP-WARN', reason: 'chip temperature high', hint: 'check airflow and fans' }],
          },
        ]
      : [];
  return {
    id: opts.id,
    index: i,
    host: opts.host,
    port: opts.port,
    model,
    uid: `sim-${opts.seed}-${i}`,
    serialNumber: `SN${String(i).padStart(8, '0')}`,
    macAddress: `02:00:${hex((i >> 24) & 255)}:${hex((i >> 16) & 255)}:${hex((i >> 8) & 255)}:${hex(i & 255)}`,
    hostname: `miner-${String(i + 1).padStart(5, '0')}`,
    username: SIM_USERNAME,
    password: opts.faults.badAuth ? 'a-different-password' : SIM_PASSWORD,
    apiVersion: opts.faults.oldApi ? API_OLD : API_LATEST,
    firmware: opts.faults.oldApi ? '22.02.1' : '26.05',
    status: 'MINER_STATUS_NORMAL',
    bootedAtMs: opts.nowMs - uptimeS * 1000,
    miningSinceMs: opts.nowMs - uptimeS * 1000 + 60_000,
    powerTargetW: model.defaultPowerW,
    hashrateTargetThs: model.nominalThs,
    tunerMode: 'TUNER_MODE_POWER_TARGET',
    nominalGhs,
    baseRealGhs,
    efficiencyNoise: near(random, 1, 0.02),
    fanRpm: [0, 1, 2, 3].map(() => Math.round(near(random, 4800, 0.08))),
    hashboards: boards,
    poolGroups: [
      {
        uid: 'pg-default',
        name: 'Default',
        quota: 1,
        pools: [
          { uid: 'pool-0', url: 'stratum+tcp://stratum.braiins.com:3333', user: `farm.worker${i + 1}`, enabled: true },
          { uid: 'pool-1', url: 'stratum+tcp://eu.stratum.braiins.com:3333', user: `farm.worker${i + 1}`, enabled: true },
        ],
      },
    ],
    acceptedShares: Math.floor(uptimeS * near(random, 0.5, 0.2)),
    rejectedShares: Math.floor(uptimeS * near(random, 0.002, 0.5)),
    locate: false,
    errors,
    faults: opts.faults,
  };
}

/** Hashrate being served now: scales with the power target, zero when not mining. */
export function currentRealGhs(m: SimMinerState): number {
  if (m.status !== 'MINER_STATUS_NORMAL') return 0;
  return m.baseRealGhs * (m.powerTargetW / m.model.defaultPowerW);
}

export function currentPowerW(m: SimMinerState): number {
  if (m.status !== 'MINER_STATUS_NORMAL') return 18; // control board only
  return Math.round(m.powerTargetW * 0.985);
}

export function efficiencyJth(m: SimMinerState): number {
  const ths = currentRealGhs(m) / 1000;
  return ths > 0 ? (currentPowerW(m) / ths) * m.efficiencyNoise : 0;
}

export function supportsApi(m: SimMinerState, major: number, minor: number): boolean {
  return m.apiVersion.major > major || (m.apiVersion.major === major && m.apiVersion.minor >= minor);
}

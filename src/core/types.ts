// Plain typed shapes of the Braiins OS replies the core returns (as decoded: camelCase, enums as names).

export interface GigaHashrate { gigahashPerSecond: number }
export interface TeraHashrate { terahashPerSecond: number }
export interface Power { watt: number }
export interface Temperature { degreeC: number }

export interface ApiVersionReply { major: number; minor: number; patch: number; pre: string; build: string }

// protobufjs keeps "last_5m" as is (it camel-cases only "_" + letter).
export interface RealHashrate {
  last_5s: GigaHashrate | null; last_15s: GigaHashrate | null; last_30s: GigaHashrate | null; last_1m: GigaHashrate | null;
  last_5m: GigaHashrate | null; last_15m: GigaHashrate | null; last_30m: GigaHashrate | null; last_1h: GigaHashrate | null;
  last_24h: GigaHashrate | null; sinceRestart: GigaHashrate | null;
}

export interface WorkSolverStats {
  realHashrate: RealHashrate | null;
  nominalHashrate: GigaHashrate | null;
  errorHashrate: { megahashPerSecond: number } | null;
  foundBlocks: number;
  bestShareStr: string;
}

export interface PoolStats {
  acceptedShares: number; rejectedShares: number; staleShares: number; lastDifficulty: number;
  generatedWork: number; bestShareStr: string;
}

export interface MinerDetails {
  uid: string;
  minerIdentity: { brand: string; name: string; minerModel: string } | null;
  platform: string;
  bosMode: string;
  bosVersion: { current: string; major: string; bosPlus: boolean } | null;
  hostname: string;
  macAddress: string;
  stickerHashrate: GigaHashrate | null;
  bosminerUptimeS: number;
  systemUptimeS: number;
  status: string;
  kernelVersion: string;
  serialNumber?: string;
}

export interface MinerStats {
  poolStats: PoolStats | null;
  minerStats: WorkSolverStats | null;
  powerStats: { approximatedConsumption: Power | null; efficiency: { joulePerTerahash: number } | null } | null;
}

export interface MinerErrorEntry {
  timestamp: string;
  message: string;
  errorCodes: { code: string; reason: string; hint: string }[];
  components: { name: string; index: number }[];
}

export interface TemperatureSensor { id?: number; location: string; temperature: Temperature | null }

export interface Hashboard {
  id: string;
  enabled: boolean;
  chipsCount: { value: number } | null;
  highestChipTemp: TemperatureSensor | null;
  boardTemp: Temperature | null;
  stats: WorkSolverStats | null;
  model?: string;
  serialNumber?: string;
  chipType?: string;
}

export interface CoolingState {
  fans: { position?: number; rpm: number; targetSpeedRatio?: number }[];
  highestTemperature: TemperatureSensor | null;
}

export interface PoolReadSide {
  uid: string; url: string; user: string; enabled: boolean; alive: boolean; active: boolean; stats: PoolStats | null;
}

export interface PoolGroupReadSide {
  name: string; uid: string; quota?: { value: number } | null; fixedShareRatio?: { value: number } | null;
  strategy?: 'quota' | 'fixedShareRatio'; pools: PoolReadSide[];
}

export interface PoolConfiguration { uid?: string; url: string; user: string; password?: string; enabled?: boolean }

export interface PoolGroupConfiguration {
  uid?: string; name: string; quota?: { value: number } | null; fixedShareRatio?: { value: number } | null; pools: PoolConfiguration[];
}

export interface TunerState {
  overallTunerState: string;
  powerTargetModeState?: { profile: unknown; currentTarget: Power | null } | null;
  hashrateTargetModeState?: { profile: unknown; currentTarget: TeraHashrate | null } | null;
  modeState?: 'powerTargetModeState' | 'hashrateTargetModeState';
}

export interface MinerConfiguration {
  poolGroups: PoolGroupConfiguration[];
  tuner: { enabled?: boolean; tunerMode?: string; powerTarget: Power | null; hashrateTarget: TeraHashrate | null } | null;
}

export interface Constraints {
  tunerConstraints: {
    powerTarget: { default: Power | null; min: Power | null; max: Power | null } | null;
    hashrateTarget: { default: TeraHashrate | null; min: TeraHashrate | null; max: TeraHashrate | null } | null;
    enabled: { default: boolean } | null;
    defaultMode: string;
  } | null;
}

export type SaveAction = 'SAVE_ACTION_SAVE' | 'SAVE_ACTION_SAVE_AND_APPLY' | 'SAVE_ACTION_SAVE_AND_FORCE_APPLY';

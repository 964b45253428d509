// Braiins OS API semantics served by the simulator: one implementation per method, on plain miner state.
import * as grpc from '@grpc/grpc-js';
import { currentPowerW, currentRealGhs, efficiencyJth, type SimMinerState } from './miner.js';
import { SimStatusError, type MethodSpec } from './method-spec.js';
import { POOL_METHODS, poolGroupConfig, requireApplyAction } from './pool-service.js';

export { SimStatusError, type MethodSpec };

const gh = (v: number) => ({ gigahashPerSecond: v });
const temp = (v: number) => ({ degreeC: v });
const secondsTs = (ms: number) => ({ seconds: Math.floor(ms / 1000), nanos: 0 });

function workStats(realGhs: number, nominalGhs: number) {
  return {
    realHashrate: {
      last_5s: gh(realGhs * 1.004),
      last_15s: gh(realGhs * 0.998),
      last_30s: gh(realGhs * 1.001),
      last_1m: gh(realGhs * 0.999),
      last_5m: gh(realGhs),
      last_15m: gh(realGhs * 1.0005),
      last_30m: gh(realGhs * 0.9995),
      last_1h: gh(realGhs * 0.9992),
      last_24h: gh(realGhs * 0.998),
      sinceRestart: gh(realGhs * 0.997),
    },
    nominalHashrate: gh(nominalGhs),
    errorHashrate: { megahashPerSecond: realGhs * 0.2 },
    foundBlocks: 0,
    bestShare: 0,
    bestShareStr: '1.2G',
  };
}

export function constraintsOf(m: SimMinerState) {
  return {
    powerMinW: m.model.minPowerW,
    powerMaxW: m.model.maxPowerW,
    powerDefaultW: m.model.defaultPowerW,
    hashrateMinThs: Math.round(m.model.nominalThs * 0.4),
    hashrateMaxThs: Math.round(m.model.nominalThs * 1.15),
    hashrateDefaultThs: m.model.nominalThs,
  };
}

export const METHODS: Record<string, MethodSpec> = {
  GetApiVersion: {
    service: 'version',
    auth: false,
    impl: (m) => ({ ...m.apiVersion, pre: '', build: '' }),
  },
  // Login is served by the fleet (sessions live there); this entry only declares it.
  Login: { service: 'auth', auth: false, impl: () => ({}) },
  GetMinerStatus: { service: 'miner', auth: true, impl: (m) => ({ status: m.status }) },
  GetMinerDetails: {
    service: 'miner',
    auth: true,
    impl: (m, _req, now) => ({
      uid: m.uid,
      minerIdentity: { brand: 'MINER_BRAND_ANTMINER', name: m.model.name, minerModel: m.model.name },
      platform: m.model.platform,
      bosMode: 'BOS_MODE_NAND',
      bosVersion: { current: `${m.firmware}-plus`, major: m.firmware, bosPlus: true },
      hostname: m.hostname,
      macAddress: m.macAddress,
      systemUptime: Math.floor((now - m.bootedAtMs) / 1000),
      stickerHashrate: gh(m.nominalGhs),
      bosminerUptimeS: Math.max(0, Math.floor((now - m.miningSinceMs) / 1000)),
      systemUptimeS: Math.floor((now - m.bootedAtMs) / 1000),
      status: m.status,
      kernelVersion: '6.1.80',
      serialNumber: m.serialNumber,
    }),
  },
  GetMinerStats: {
    service: 'miner',
    auth: true,
    impl: (m) => ({
      poolStats: { acceptedShares: m.acceptedShares, rejectedShares: m.rejectedShares, staleShares: 0, lastDifficulty: 65536, generatedWork: m.acceptedShares * 65536, bestShareStr: '1.2G' },
      minerStats: workStats(currentRealGhs(m), m.nominalGhs),
      powerStats: { approximatedConsumption: { watt: currentPowerW(m) }, efficiency: { joulePerTerahash: efficiencyJth(m) } },
    }),
  },
  GetErrors: {
    service: 'miner',
    since: [1, 2],
    auth: true,
    impl: (m) => ({
      errors: m.errors.map((e) => ({ timestamp: e.timestamp, message: e.message, errorCodes: e.codes, components: [{ name: 'hashboard', index: 1 }] })),
    }),
  },
  GetHashboards: {
    service: 'miner',
    auth: true,
    impl: (m) => ({
      hashboards: m.hashboards.map((b) => ({
        id: b.id,
        enabled: b.enabled,
        chipsCount: { value: m.model.chipsPerBoard },
        currentVoltage: { volt: b.voltageV },
        currentFrequency: { hertz: b.frequencyHz },
        highestChipTemp: { location: 'SENSOR_LOCATION_CHIP', temperature: temp(b.chipTempC) },
        boardTemp: temp(b.boardTempC),
        stats: workStats(currentRealGhs(m) / m.hashboards.length, m.nominalGhs / m.hashboards.length),
        model: m.model.name,
        lowestInletTemp: temp(b.boardTempC - 20),
        highestOutletTemp: temp(b.boardTempC + 5),
        serialNumber: b.serialNumber,
        boardName: `BHB${m.model.chipsPerBoard}`,
        chipType: m.model.chipType,
      })),
    }),
  },
  GetCoolingState: {
    service: 'cooling',
    auth: true,
    impl: (m) => ({
      fans: m.fanRpm.map((rpm, position) => ({ position, rpm, targetSpeedRatio: 0.6 })),
      highestTemperature: { location: 'SENSOR_LOCATION_CHIP', temperature: temp(Math.max(...m.hashboards.map((b) => b.chipTempC))) },
    }),
  },
  ...POOL_METHODS,
  GetTunerState: {
    service: 'performance',
    auth: true,
    impl: (m) =>
      m.tunerMode === 'TUNER_MODE_POWER_TARGET'
        ? {
            overallTunerState: 'TUNER_STATE_STABLE',
            powerTargetModeState: {
              profile: { created: secondsTs(m.miningSinceMs), target: { watt: m.powerTargetW }, measuredHashrate: gh(currentRealGhs(m)), estimatedPowerConsumption: { watt: currentPowerW(m) } },
              currentTarget: { watt: m.powerTargetW },
            },
          }
        : {
            overallTunerState: 'TUNER_STATE_STABLE',
            hashrateTargetModeState: { profile: {}, currentTarget: { terahashPerSecond: m.hashrateTargetThs } },
          },
  },
  SetPowerTarget: {
    service: 'performance',
    auth: true,
    mutation: true,
    impl: (m, req) => {
      requireApplyAction(req);
      const watt = Number((req['powerTarget'] as { watt?: number } | null)?.watt ?? 0);
      const c = constraintsOf(m);
      if (watt < c.powerMinW || watt > c.powerMaxW) {
        throw new SimStatusError(grpc.status.INVALID_ARGUMENT, `power target [${watt}W] not in allowed range [${c.powerMinW}, ${c.powerMaxW}]`);
      }
      m.powerTargetW = watt;
      m.tunerMode = 'TUNER_MODE_POWER_TARGET';
      return { powerTarget: { watt } };
    },
  },
  SetHashrateTarget: {
    service: 'performance',
    auth: true,
    mutation: true,
    impl: (m, req) => {
      requireApplyAction(req);
      const ths = Number((req['hashrateTarget'] as { terahashPerSecond?: number } | null)?.terahashPerSecond ?? 0);
      const c = constraintsOf(m);
      if (ths < c.hashrateMinThs || ths > c.hashrateMaxThs) {
        throw new SimStatusError(grpc.status.INVALID_ARGUMENT, `hashrate target [${ths}TH/s] not in allowed range [${c.hashrateMinThs}, ${c.hashrateMaxThs}]`);
      }
      m.hashrateTargetThs = ths;
      m.tunerMode = 'TUNER_MODE_HASHRATE_TARGET';
      return { hashrateTarget: { terahashPerSecond: ths } };
    },
  },
  IncrementPowerTarget: {
    service: 'performance',
    auth: true,
    mutation: true,
    impl: (m, req) => {
      const inc = Number((req['powerTargetIncrement'] as { watt?: number } | null)?.watt ?? 0);
      m.powerTargetW = Math.min(m.model.maxPowerW, m.powerTargetW + inc);
      return { powerTarget: { watt: m.powerTargetW } };
    },
  },
  GetMinerConfiguration: {
    service: 'configuration',
    auth: true,
    impl: (m) => ({
      poolGroups: m.poolGroups.map(poolGroupConfig),
      tuner: { enabled: true, tunerMode: m.tunerMode, powerTarget: { watt: m.powerTargetW }, hashrateTarget: { terahashPerSecond: m.hashrateTargetThs } },
    }),
  },
  GetConstraints: {
    service: 'configuration',
    auth: true,
    impl: (m) => {
      const c = constraintsOf(m);
      return {
        tunerConstraints: {
          powerTarget: { default: { watt: c.powerDefaultW }, min: { watt: c.powerMinW }, max: { watt: c.powerMaxW } },
          hashrateTarget: {
            default: { terahashPerSecond: c.hashrateDefaultThs },
            min: { terahashPerSecond: c.hashrateMinThs },
            max: { terahashPerSecond: c.hashrateMaxThs },
          },
          enabled: { default: true },
          defaultMode: 'TUNER_MODE_POWER_TARGET',
        },
      };
    },
  },
  Start: { service: 'actions', auth: true, mutation: true, impl: (m, _r, now) => setStatus(m, 'MINER_STATUS_NORMAL', now, 'alreadyRunning') },
  Stop: { service: 'actions', auth: true, mutation: true, impl: (m, _r, now) => setStatus(m, 'MINER_STATUS_NOT_STARTED', now, 'alreadyStopped') },
  PauseMining: { service: 'actions', auth: true, mutation: true, impl: (m, _r, now) => setStatus(m, 'MINER_STATUS_PAUSED', now, 'alreadyPaused') },
  ResumeMining: { service: 'actions', auth: true, mutation: true, impl: (m, _r, now) => setStatus(m, 'MINER_STATUS_NORMAL', now, 'alreadyMining') },
  Restart: {
    service: 'actions',
    auth: true,
    mutation: true,
    impl: (m, _r, now) => {
      m.miningSinceMs = now;
      return setStatus(m, 'MINER_STATUS_NORMAL', now, 'alreadyRunning');
    },
  },
  // Reboot's effect (the miner going away) is carried out by the fleet after the reply.
  Reboot: { service: 'actions', auth: true, mutation: true, impl: () => ({}) },
  SetLocateDeviceStatus: {
    service: 'actions',
    auth: true,
    mutation: true,
    impl: (m, req) => {
      m.locate = Boolean(req['enable']);
      return { enabled: m.locate };
    },
  },
  GetLocateDeviceStatus: { service: 'actions', auth: true, impl: (m) => ({ enabled: m.locate }) },
};

function setStatus(m: SimMinerState, status: SimMinerState['status'], now: number, alreadyField: string) {
  const already = m.status === status;
  if (!already) {
    if (status === 'MINER_STATUS_NORMAL') m.miningSinceMs = now;
    m.status = status;
  }
  return { [alreadyField]: already };
}

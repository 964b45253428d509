import { describe, expect, it } from 'vitest';
import * as protobuf from 'protobufjs';
import path from 'node:path';
import { PROTO_DIR, PROTO_FILES, packageDefinition, SERVICE_NAMES } from '../src/core/proto.js';

// Field numbers and types copied from ../shared/bos-api.md (the public API's interface facts).
const FIELDS: [message: string, field: string, id: number, type: string, rule?: string][] = [
  ['braiins.bos.ApiVersion', 'major', 1, 'uint64'],
  ['braiins.bos.ApiVersion', 'build', 5, 'string'],
  ['braiins.bos.v1.LoginResponse', 'timeout_s', 2, 'uint32'],
  ['braiins.bos.v1.Power', 'watt', 1, 'uint64'],
  ['braiins.bos.v1.GetMinerDetailsResponse', 'serial_number', 16, 'string'],
  ['braiins.bos.v1.GetMinerDetailsResponse', 'status', 12, 'MinerStatus'],
  ['braiins.bos.v1.GetMinerDetailsResponse', 'sticker_hashrate', 9, 'GigaHashrate'],
  ['braiins.bos.v1.GetMinerStatsResponse', 'power_stats', 3, 'MinerPowerStats'],
  ['braiins.bos.v1.RealHashrate', 'last_5m', 5, 'GigaHashrate'],
  ['braiins.bos.v1.RealHashrate', 'since_restart', 10, 'GigaHashrate'],
  ['braiins.bos.v1.Hashboard', 'chips_count', 3, 'google.protobuf.UInt32Value'],
  ['braiins.bos.v1.Hashboard', 'chip_type', 14, 'string'],
  ['braiins.bos.v1.PoolGroup', 'uid', 5, 'string'],
  ['braiins.bos.v1.PoolGroupConfiguration', 'pools', 5, 'PoolConfiguration', 'repeated'],
  ['braiins.bos.v1.PoolConfiguration', 'password', 4, 'string'],
  ['braiins.bos.v1.PoolStats', 'last_share_time', 7, 'google.protobuf.Timestamp'],
  ['braiins.bos.v1.SetPoolGroupsRequest', 'pool_groups', 2, 'PoolGroupConfiguration', 'repeated'],
  ['braiins.bos.v1.SetPowerTargetRequest', 'power_target', 2, 'Power'],
  ['braiins.bos.v1.GetTunerStateResponse', 'hashrate_target_mode_state', 3, 'HashrateTargetModeState'],
  ['braiins.bos.v1.TunerConstraints', 'default_mode', 4, 'TunerMode'],
  ['braiins.bos.v1.GetMinerConfigurationResponse', 'tuner', 3, 'TunerConfiguration'],
  ['braiins.bos.v1.FanState', 'target_speed_ratio', 3, 'double'],
  ['braiins.bos.v1.TemperatureSensor', 'temperature', 3, 'Temperature'],
  ['braiins.bos.v1.MinerError', 'error_codes', 3, 'ErrorCode', 'repeated'],
  ['braiins.bos.v1.ResumeMiningResponse', 'already_mining', 1, 'bool'],
];

const ENUMS: [enumName: string, value: string, n: number][] = [
  ['braiins.bos.v1.SaveAction', 'SAVE_ACTION_SAVE_AND_APPLY', 2],
  ['braiins.bos.v1.MinerStatus', 'MINER_STATUS_RESTRICTED', 5],
  ['braiins.bos.v1.Platform', 'PLATFORM_STM32MP157C_II2_BMM1', 8],
  ['braiins.bos.v1.BosMode', 'BOS_MODE_EMMC', 5],
  ['braiins.bos.v1.TunerState', 'TUNER_STATE_PREHEAT', 6],
  ['braiins.bos.v1.SensorLocation', 'SENSOR_LOCATION_PCB', 2],
];

function loadRoot(): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => (path.isAbsolute(target) || target.startsWith('google/') ? target : path.join(PROTO_DIR, target));
  root.loadSync(PROTO_FILES.map((f) => path.join(PROTO_DIR, f)), { keepCase: true });
  root.resolveAll();
  return root;
}

describe('proto files', () => {
  it('load with @grpc/proto-loader and expose every service', () => {
    const def = packageDefinition();
    for (const name of Object.values(SERVICE_NAMES)) expect(def[name], name).toBeDefined();
    const miner = def[SERVICE_NAMES.miner] as unknown as Record<string, { responseStream: boolean; path: string }>;
    expect(miner['GetMinerStatus']?.responseStream).toBe(true);
    expect(miner['GetMinerStats']?.path).toBe('/braiins.bos.v1.MinerService/GetMinerStats');
    const version = def[SERVICE_NAMES.version] as unknown as Record<string, { path: string }>;
    expect(version['GetApiVersion']?.path).toBe('/braiins.bos.ApiVersionService/GetApiVersion');
  });

  it.each(FIELDS)('%s.%s = %i (%s)', (message, field, id, type, rule) => {
    const t = loadRoot().lookupType(message);
    const f = t.fields[field];
    expect(f, `${message}.${field}`).toBeDefined();
    expect(f?.id).toBe(id);
    expect(f?.type).toBe(type);
    if (rule === 'repeated') expect(f?.repeated).toBe(true);
  });

  it.each(ENUMS)('%s.%s = %i', (enumName, value, n) => {
    expect(loadRoot().lookupEnum(enumName).values[value]).toBe(n);
  });

  it('keeps proto3 optional where the API has it', () => {
    const t = loadRoot().lookupType('braiins.bos.v1.PoolConfiguration');
    expect(t.fields['enabled']?.options?.['proto3_optional'] ?? t.fields['enabled']?.optional).toBeTruthy();
  });
});

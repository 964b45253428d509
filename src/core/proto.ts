// Loads bos-fleet's wire-compatible .proto files once per thread and exposes the service definitions.
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import * as grpc from '@grpc/grpc-js';

/** Repository root (works from src/ under vitest and from dist/ at run time). */
export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const PROTO_DIR = path.join(PACKAGE_ROOT, 'proto');

export const PROTO_FILES = [
  'bos/version.proto',
  'bos/v1/authentication.proto',
  'bos/v1/miner.proto',
  'bos/v1/cooling.proto',
  'bos/v1/pool.proto',
  'bos/v1/performance.proto',
  'bos/v1/configuration.proto',
  'bos/v1/actions.proto',
] as const;

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

export const SERVICE_NAMES = {
  version: 'braiins.bos.ApiVersionService',
  auth: 'braiins.bos.v1.AuthenticationService',
  miner: 'braiins.bos.v1.MinerService',
  cooling: 'braiins.bos.v1.CoolingService',
  pool: 'braiins.bos.v1.PoolService',
  performance: 'braiins.bos.v1.PerformanceService',
  configuration: 'braiins.bos.v1.ConfigurationService',
  actions: 'braiins.bos.v1.ActionsService',
} as const;

export type ServiceKey = keyof typeof SERVICE_NAMES;

let cached: protoLoader.PackageDefinition | undefined;

export function packageDefinition(): protoLoader.PackageDefinition {
  cached ??= protoLoader.loadSync([...PROTO_FILES], LOADER_OPTIONS);
  return cached;
}

/** The grpc-js service definition (method paths, serializers) of one service. */
export function serviceDefinition(key: ServiceKey): grpc.ServiceDefinition {
  const def = packageDefinition()[SERVICE_NAMES[key]];
  if (!def) {
    throw new Error(`proto: service ${SERVICE_NAMES[key]} not found in ${PROTO_DIR}`);
  }
  return def as unknown as grpc.ServiceDefinition;
}

export const SERVICE_KEYS = Object.keys(SERVICE_NAMES) as ServiceKey[];

// Every Braiins OS method the core calls: its service, whether it changes state, whether repeating it
// is safe, and the first API version that has it (the capability table).
import type * as grpc from '@grpc/grpc-js';
import { packageDefinition, SERVICE_NAMES, type ServiceKey } from './proto.js';

export interface MethodSpec {
  service: ServiceKey;
  mutation: boolean;
  /** Repeating it cannot apply the change twice (absolute sets, idempotent actions). */
  idempotent: boolean;
  auth: boolean;
  /** First API version with the method. */
  since?: readonly [major: number, minor: number, patch: number];
}

const read = (service: ServiceKey, since?: MethodSpec['since']): MethodSpec => ({ service, mutation: false, idempotent: true, auth: true, ...(since ? { since } : {}) });
const write = (service: ServiceKey, idempotent: boolean, since?: MethodSpec['since']): MethodSpec => ({ service, mutation: true, idempotent, auth: true, ...(since ? { since } : {}) });

export const METHODS = {
  GetApiVersion: { service: 'version', mutation: false, idempotent: true, auth: false },
  Login: { service: 'auth', mutation: false, idempotent: true, auth: false },
  /** Server stream: used by status-stream.ts, never as a unary call. */
  GetMinerStatus: read('miner'),
  GetMinerDetails: read('miner'),
  GetMinerStats: read('miner'),
  GetErrors: read('miner', [1, 2, 0]),
  GetHashboards: read('miner'),
  GetCoolingState: read('cooling'),
  GetPoolGroups: read('pool'),
  SetPoolGroups: write('pool', true, [1, 2, 0]),
  GetTunerState: read('performance'),
  SetPowerTarget: write('performance', true),
  SetHashrateTarget: write('performance', true),
  GetMinerConfiguration: read('configuration'),
  GetConstraints: read('configuration'),
  PauseMining: write('actions', true),
  ResumeMining: write('actions', true),
  Start: write('actions', true),
  Stop: write('actions', true),
  // A repeated Reboot reboots twice: only retried when it provably never left.
  Reboot: write('actions', false),
  SetLocateDeviceStatus: write('actions', true),
  GetLocateDeviceStatus: read('actions'),
} as const satisfies Record<string, MethodSpec>;

export type MethodName = keyof typeof METHODS;

export interface ApiVersion {
  major: number;
  minor: number;
  patch: number;
}

export function versionAtLeast(v: ApiVersion, since: readonly [number, number, number]): boolean {
  if (v.major !== since[0]) return v.major > since[0];
  if (v.minor !== since[1]) return v.minor > since[1];
  return v.patch >= since[2];
}

export function formatVersion(v: ApiVersion): string {
  return `${v.major}.${v.minor}.${v.patch}`;
}

/** grpc-js method definition (path and (de)serializers) of a method. */
export function methodDefinition(name: string): grpc.MethodDefinition<unknown, unknown> {
  const spec = (METHODS as Record<string, MethodSpec>)[name];
  if (!spec) throw new Error(`unknown method ${name}`);
  const service = packageDefinition()[SERVICE_NAMES[spec.service]] as unknown as Record<string, grpc.MethodDefinition<unknown, unknown>>;
  const def = service[name];
  if (!def) throw new Error(`method ${name} missing from ${SERVICE_NAMES[spec.service]}`);
  return def;
}

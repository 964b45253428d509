// The shape of one simulated API method, and the error an implementation raises to answer a status.
import * as grpc from '@grpc/grpc-js';
import type { SimMinerState } from './miner.js';

/** Raised by an implementation to answer with a gRPC status. */
export class SimStatusError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

export interface MethodSpec {
  service: 'version' | 'auth' | 'miner' | 'cooling' | 'pool' | 'performance' | 'configuration' | 'actions';
  /** Minimal API version (major, minor) that has the method. */
  since?: [number, number];
  auth: boolean;
  mutation?: boolean;
  impl: (m: SimMinerState, req: Record<string, unknown>, nowMs: number) => Record<string, unknown>;
}

/** A status error for grpc-js; anything unexpected answers INTERNAL. */
export function toServiceError(err: unknown): grpc.ServiceError {
  if (err instanceof SimStatusError) return Object.assign(new Error(err.message), { code: err.code, details: err.message, metadata: new grpc.Metadata() });
  const message = err instanceof Error ? err.message : String(err);
  return Object.assign(new Error(message), { code: grpc.status.INTERNAL, details: message, metadata: new grpc.Metadata() });
}

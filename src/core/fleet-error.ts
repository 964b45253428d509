// FleetError: the one typed error of the core, and the one converter from anything thrown into it.
import { status as GrpcStatus } from '@grpc/grpc-js';
import { CODE_INFO, isErrorCode, type ErrorCode } from './error-codes.js';

export interface ErrorContext {
  minerId?: string;
  host?: string;
  port?: number;
  operation?: string;
  /** Numeric gRPC status, when the failure came from a call. */
  grpcCode?: number;
  attempts?: number;
  /** False when the request provably never left this host (e.g. connection refused). */
  mayHaveReachedMiner?: boolean;
  /** True when the failed operation changes miner state. */
  mutation?: boolean;
  /** How the call went to the miner. */
  transport?: 'plaintext' | 'tls';
  /** A write not sent because its window closed (CallOptions.writeNotAfterMs). */
  writeWindowClosed?: boolean;
  /** A timeout seen this late (ms) past its deadline: this process did not run meanwhile, and the miner is not blamed (core/stall.ts). */
  stalledMs?: number;
}

/** The plain-data form that crosses thread and process boundaries. */
export interface PlainFleetError {
  name: 'FleetError';
  code: ErrorCode;
  message: string;
  retryable: boolean;
  suggestion: string;
  context: ErrorContext;
}

// This host, not the miner, ran out of something a connection needs (grpc-js: "connect EMFILE
// 10.0.0.1:50051 - Local (undefined:undefined)"): nothing was sent, and the miner is not to blame.
const LOCAL_EXHAUSTION = /\b(EMFILE|ENFILE|EADDRNOTAVAIL|ENOBUFS)\b/;
const TLS_TEXT = /SSL|TLS|certificate|self[- ]signed|unable to verify|Hostname\/IP does not match|ERR_OSSL|alert/i;
// Before a request is sent: no connection, or the miner's host name did not resolve (grpc-js's DNS
// resolver says "Name resolution failed for target dns:…", a deadline hit during it "waiting for name resolution").
const NEVER_CONNECTED = /No connection established|Waiting for LB pick|ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|Name resolution failed|waiting for name resolution/;

// grpc-js's word when the port took the connection and closed it before HTTP/2 began (no error of
// its own): a plaintext client at a miner that serves TLS only gets just that.
const CLOSED_AT_ONCE = /Last error: Failed to connect \(/;

function closedAtOnceNote(transport: ErrorContext['transport']): string {
  const what = "the miner's port took the connection and closed it before gRPC began";
  return transport === 'tls' ? `${what} (its gRPC server still starting, or another service on the port?)` : `${what}: a miner that serves TLS only does that to a plaintext client (if it does, give its site in --tls)`;
}

export class FleetError extends Error {
  override readonly name = 'FleetError';
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly suggestion: string;
  readonly context: ErrorContext;

  constructor(code: ErrorCode, message: string, context: ErrorContext = {}) {
    super(message);
    this.code = code;
    this.retryable = CODE_INFO[code].retryable;
    this.suggestion = CODE_INFO[code].suggestion;
    this.context = context;
  }

  /** A copy with more context (e.g. the attempt count, known only to the retry layer). */
  with(context: ErrorContext): FleetError {
    return new FleetError(this.code, this.message, { ...this.context, ...context });
  }

  toPlain(): PlainFleetError {
    return { name: 'FleetError', code: this.code, message: this.message, retryable: this.retryable, suggestion: this.suggestion, context: { ...this.context } };
  }

  /**
   * Turns anything thrown into exactly one FleetError. Uses the gRPC status, the detail text and
   * whether the request may have reached the miner; never relies on `instanceof` for data that
   * crossed a thread (a plain `{name: 'FleetError', code}` is recognised by shape).
   */
  static from(err: unknown, context: ErrorContext = {}): FleetError {
    if (err instanceof FleetError) return err.with(context);
    if (isPlainFleetError(err)) return new FleetError(err.code, err.message, { ...err.context, ...context });
    const e = (typeof err === 'object' && err !== null ? err : {}) as { code?: unknown; details?: unknown; message?: unknown; name?: unknown };
    const raw = typeof e.details === 'string' ? e.details : typeof e.message === 'string' ? e.message : String(err);
    // grpc-js appends an empty note, and to a deadline the time each of its own stages took.
    const details = raw.replace(/\.?\s*Resolution note:\s*$/, '').replace(/,(?:name resolution|LB pick|metadata filters): [\d.]+s/g, '');
    if (e.name === 'AbortError') return new FleetError('CANCELLED', 'operation aborted', context);
    if (typeof e.code === 'number' && e.code >= 0 && e.code <= 16) return fromGrpcStatus(e.code, details, context);
    if (typeof e.code === 'string') return fromErrno(e.code, details, context);
    return new FleetError('INTERNAL', details, context);
  }
}

export function isPlainFleetError(value: unknown): value is PlainFleetError {
  const v = value as Partial<PlainFleetError> | null;
  return typeof v === 'object' && v !== null && v.name === 'FleetError' && isErrorCode(v.code) && typeof v.message === 'string';
}

function fromErrno(code: string, details: string, ctx: ErrorContext): FleetError {
  switch (code) {
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new FleetError('MINER_UNREACHABLE', details, { mayHaveReachedMiner: false, ...ctx });
    case 'ETIMEDOUT':
      return new FleetError('MINER_TIMEOUT', details, ctx);
    case 'EMFILE':
    case 'ENFILE':
    case 'EADDRNOTAVAIL':
    case 'ENOBUFS':
      return new FleetError('WORKER_OUT_OF_RESOURCES', details, { mayHaveReachedMiner: false, ...ctx });
    case 'ECONNRESET':
    case 'EPIPE':
      return mutationAware('CONNECTION_LOST', details, ctx);
    case 'ABORT_ERR':
      return new FleetError('CANCELLED', details, ctx);
    default:
      return new FleetError('INTERNAL', `${code}: ${details}`, ctx);
  }
}

/** What an OUTCOME_UNKNOWN message ends with; a read-back that settles the outcome replaces it. */
export const OUTCOME_UNKNOWN_NOTE = ' (the change may or may not have been applied)';

/** A mutation interrupted after it may have reached the miner has an unknown outcome. */
function mutationAware(code: ErrorCode, details: string, ctx: ErrorContext): FleetError {
  if (ctx.mutation && ctx.mayHaveReachedMiner !== false) {
    return new FleetError('OUTCOME_UNKNOWN', `${details}${OUTCOME_UNKNOWN_NOTE}`, { ...ctx, mayHaveReachedMiner: true });
  }
  return new FleetError(code, details, ctx);
}

function fromGrpcStatus(grpcCode: number, details: string, context: ErrorContext): FleetError {
  const neverLeft = NEVER_CONNECTED.test(details);
  const ctx: ErrorContext = { ...context, grpcCode, ...(neverLeft ? { mayHaveReachedMiner: false } : {}) };
  switch (grpcCode) {
    case GrpcStatus.UNAVAILABLE:
      if (LOCAL_EXHAUSTION.test(details)) return new FleetError('WORKER_OUT_OF_RESOURCES', details, { ...ctx, mayHaveReachedMiner: false });
      if (TLS_TEXT.test(details)) return new FleetError('TLS_ERROR', details, ctx);
      // "No connection established. Last error: Protocol error": something that is not gRPC answered.
      if (/Protocol error|Received HTTP status code|Bad Request|malformed/i.test(details)) return new FleetError('PROTOCOL_ERROR', details, ctx);
      if (CLOSED_AT_ONCE.test(details)) return new FleetError('MINER_UNREACHABLE', `${details}: ${closedAtOnceNote(ctx.transport)}`, ctx);
      if (neverLeft) return new FleetError('MINER_UNREACHABLE', details, ctx);
      return mutationAware('CONNECTION_LOST', details, ctx);
    case GrpcStatus.DEADLINE_EXCEEDED:
      return neverLeft ? new FleetError('MINER_TIMEOUT', details, ctx) : mutationAware('MINER_TIMEOUT', details, ctx);
    case GrpcStatus.RESOURCE_EXHAUSTED:
      return /message larger than max|Received message larger/i.test(details)
        ? new FleetError('RESPONSE_TOO_LARGE', details, ctx)
        : new FleetError('MINER_OVERLOADED', details, ctx);
    case GrpcStatus.UNAUTHENTICATED:
      return new FleetError('MINER_AUTH_FAILED', details, ctx);
    case GrpcStatus.PERMISSION_DENIED:
      return new FleetError('MINER_PERMISSION_DENIED', details, ctx);
    case GrpcStatus.UNIMPLEMENTED:
      return new FleetError('UNSUPPORTED_BY_FIRMWARE', details, ctx);
    case GrpcStatus.INVALID_ARGUMENT:
    case GrpcStatus.OUT_OF_RANGE:
    case GrpcStatus.FAILED_PRECONDITION:
    case GrpcStatus.NOT_FOUND:
    case GrpcStatus.ALREADY_EXISTS:
      return new FleetError('INVALID_REQUEST', details, ctx);
    case GrpcStatus.CANCELLED:
      return new FleetError('CANCELLED', details, ctx);
    case GrpcStatus.INTERNAL:
      // grpc-js reports undecodable replies as INTERNAL "Response message parsing error".
      return /pars|decod|deserializ/i.test(details) ? new FleetError('PROTOCOL_ERROR', details, ctx) : mutationAware('INTERNAL', details, ctx);
    case GrpcStatus.UNKNOWN:
    case GrpcStatus.ABORTED:
    case GrpcStatus.DATA_LOSS:
      return mutationAware('CONNECTION_LOST', details, ctx);
    default:
      return new FleetError('INTERNAL', details, ctx);
  }
}

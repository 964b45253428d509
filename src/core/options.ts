// Core options: one zod schema is the single source of defaults and validation (units in names).
import { z } from 'zod';

/** The largest miner reply accepted: 512 KiB by default (a status reply is a few KB), 4 MiB at most. */
export const DEFAULT_RECEIVE_BYTES = 512 * 1024;
/** Miner channels a thread keeps open between polls (least recently used closed beyond). */
export const DEFAULT_MAX_CONNECTIONS = 4_096;
export const MIN_RECEIVE_BYTES = 1024;
export const MAX_RECEIVE_BYTES = 4 * 1024 * 1024;

export const coreOptionsSchema = z
  .object({
    /** Time to establish a connection before a call (a call never waits longer than this to connect). */
    connectTimeoutMs: z.number().int().positive().default(3_000),
    /** Deadline of one read attempt. */
    readTimeoutMs: z.number().int().positive().default(5_000),
    /** Deadline of one mutation attempt. */
    mutationTimeoutMs: z.number().int().positive().default(10_000),
    /** Deadline of a Login. */
    loginTimeoutMs: z.number().int().positive().default(5_000),
    /** Total time for all attempts of one logical call, waits included. */
    callBudgetMs: z.number().int().positive().default(15_000),
    retry: z
      .object({
        maxAttempts: z.number().int().min(1).max(10).default(3),
        baseDelayMs: z.number().int().nonnegative().default(200),
        maxDelayMs: z.number().int().positive().default(2_000),
      })
      .prefault({}),
    breaker: z
      .object({
        failureThreshold: z.number().int().min(1).max(16).default(5),
        windowMs: z.number().int().positive().default(60_000),
        openMs: z.number().int().positive().default(30_000),
        halfOpenSuccesses: z.number().int().min(1).default(1),
        probeLeaseMs: z.number().int().positive().default(30_000),
      })
      .prefault({}),
    pool: z
      .object({
        /** Open channels kept per thread; the least recently used is closed beyond it. */
        maxConnections: z.number().int().positive().default(DEFAULT_MAX_CONNECTIONS),
        /** A channel unused for this long is closed. */
        idleTtlMs: z.number().int().positive().default(120_000),
        /** Consecutive transport failures after which a channel is rebuilt. */
        unhealthyAfterFailures: z.number().int().positive().default(3),
        /** HTTP/2 keepalive ping interval: 5 min is the least gRPC-core servers accept. */
        keepaliveTimeMs: z.number().int().min(300_000).default(300_000),
        keepaliveTimeoutMs: z.number().int().positive().default(20_000),
        sweepIntervalMs: z.number().int().positive().default(10_000),
      })
      .prefault({}),
    /** Largest reply accepted (`--max-receive-bytes`); a status reply is a few KB. */
    maxReceiveBytes: z.number().int().min(MIN_RECEIVE_BYTES).max(MAX_RECEIVE_BYTES).default(DEFAULT_RECEIVE_BYTES),
    /** How long a miner's API version stays cached. */
    versionCacheTtlMs: z.number().int().positive().default(600_000),
    /** A session unused this long is dropped (real miners end sessions after 3,600 s without calls). */
    sessionIdleMs: z.number().int().positive().default(3_600_000),
    stream: z
      .object({
        maxReconnects: z.number().int().nonnegative().default(10),
        reconnectBaseDelayMs: z.number().int().nonnegative().default(500),
        reconnectMaxDelayMs: z.number().int().positive().default(15_000),
        /** A subscription up this long counts as healthy: earlier drops are forgiven. */
        stableAfterMs: z.number().int().positive().default(30_000),
      })
      .prefault({}),
  })
  .strict();

export type CoreOptionsInput = z.input<typeof coreOptionsSchema>;
export type CoreOptions = z.output<typeof coreOptionsSchema>;

/** Validates options once; the error names the option and the bad value. */
export function parseCoreOptions(input: CoreOptionsInput = {}): CoreOptions {
  const r = coreOptionsSchema.safeParse(input);
  if (!r.success) {
    const issue = r.error.issues[0];
    const where = issue?.path.join('.') || '(options)';
    let value: unknown = input;
    for (const k of issue?.path ?? []) value = (value as Record<PropertyKey, unknown> | undefined)?.[k as PropertyKey];
    throw new TypeError(`options.${where} ${issue?.message ?? 'is invalid'} (got ${JSON.stringify(value)})`);
  }
  return r.data;
}

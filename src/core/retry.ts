// In-call retries. WHO RETRIES WHAT (the one place this is decided):
//  - grpc-js's built-in retry is OFF on every channel (`grpc.enable_retries: 0`, see channel-options.ts),
//    so an attempt counted here is exactly one request on the wire.
//  - This layer retries one logical call: only retryable codes, only reads or provably-unsent or
//    idempotent mutations, with capped exponential backoff + full jitter, inside one deadline budget.
//  - A write is sent only within its window (CallOptions.writeNotAfterMs: while the worker surely
//    holds its job, see workers/change-job.ts); past it, it is not sent, nor retried here.
//  - BullMQ job attempts (src/workers) are the outer layer: they re-run a whole job later, only for
//    retryable codes, and are counted separately (outcome.jobAttempts). Non-idempotent calls
//    (IncrementPowerTarget, …) are never made by bos-fleet.
import { backoffDelayMs } from './backoff.js';
import type { Clock } from './clock.js';
import { FleetError, type ErrorContext } from './fleet-error.js';

export interface RetryPolicy {
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** Total time for all attempts and the waits between them. */
  budgetMs: number;
}

export interface RetryContext {
  /** 1-based attempt number. */
  attempt: number;
  /** Time left in the budget for this attempt. */
  remainingMs: number;
}

export interface RetryDeps {
  clock: Clock;
  random?: () => number;
  signal?: AbortSignal;
}

/**
 * Whether a failed attempt may be tried again. A mutation is retried only when the request provably
 * never reached the miner, or when the caller declares it idempotent (an absolute set).
 */
export function shouldRetry(err: FleetError, opts: { mutation: boolean; idempotent: boolean }): boolean {
  if (!err.retryable) return false;
  if (err.code === 'CIRCUIT_OPEN') return false; // the breaker decides when to try again, not us
  if (!opts.mutation) return true;
  return err.context.mayHaveReachedMiner === false || opts.idempotent;
}

export async function withRetry<T>(
  fn: (ctx: RetryContext) => Promise<T>,
  policy: RetryPolicy,
  deps: RetryDeps,
  classify: { mutation: boolean; idempotent: boolean },
): Promise<{ value: T; attempts: number }> {
  const started = deps.clock.now();
  let previous: FleetError | undefined;
  for (let attempt = 1; ; attempt++) {
    const remainingMs = policy.budgetMs - (deps.clock.now() - started);
    try {
      return { value: await fn({ attempt, remainingMs }), attempts: attempt };
    } catch (raw) {
      const err = FleetError.from(raw).with({ attempts: attempt });
      // Our own retries opened the breaker: the truthful cause is the failure before it.
      if (err.code === 'CIRCUIT_OPEN' && previous) throw previous;
      previous = err;
      if (attempt >= policy.maxAttempts || !shouldRetry(err, classify)) throw err;
      const delay = backoffDelayMs(attempt, { baseDelayMs: policy.baseDelayMs, maxDelayMs: policy.maxDelayMs, random: deps.random });
      // Retry only if the wait still leaves a useful slice of the budget for the next attempt.
      const leftAfterWait = policy.budgetMs - (deps.clock.now() - started) - delay;
      if (leftAfterWait < Math.min(250, policy.budgetMs / 10)) throw err;
      try {
        await deps.clock.sleep(delay, deps.signal);
      } catch {
        throw new FleetError('CANCELLED', 'retry wait aborted', { ...err.context });
      }
    }
  }
}

/** A write's time left before its window closes (see CallOptions.writeNotAfterMs), as its attempt's timeout; none left: CANCELLED, unsent. */
export function writeWindow(method: string, leftMs: number, timeoutMs: number, ctx: ErrorContext): number {
  if (leftMs > 0) return Math.min(timeoutMs, leftMs);
  throw new FleetError('CANCELLED', `${method} not sent: this worker's hold on the job ran out first (the worker was stopped or slowed for longer than its lock, and another may have taken the job over)`, {
    ...ctx,
    mayHaveReachedMiner: false,
    writeWindowClosed: true,
  });
}

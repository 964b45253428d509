// Guards attempts with the miner's circuit breaker: OPEN fails fast with no traffic; only
// miner-side failures count against the miner.
import type { Admission, Breaker } from './breaker.js';
import { CODE_INFO } from './error-codes.js';
import { FleetError, type ErrorContext } from './fleet-error.js';

/** Admits one attempt, or throws CIRCUIT_OPEN (nothing is sent). */
function admitAttempt(breaker: Breaker, ctx: ErrorContext): Exclude<Admission, 'rejected'> {
  const admission = breaker.admit();
  if (admission === 'rejected') {
    const why = breaker.lastFailure;
    throw new FleetError('CIRCUIT_OPEN', `circuit open for ${ctx.minerId ?? ctx.host}: recent calls kept failing${why ? ` (last: ${why})` : ''}`, {
      ...ctx,
      mayHaveReachedMiner: false,
    });
  }
  return admission;
}

/** Records a failed attempt (miner faults only; a probe that failed for another reason frees its slot). */
function settleFailure(breaker: Breaker, admission: Exclude<Admission, 'rejected'>, raw: unknown, ctx: ErrorContext): FleetError {
  const err = FleetError.from(raw, ctx);
  // A timeout this process's own stall caused (core/stall.ts) is not the miner's.
  const minerFault = (CODE_INFO[err.code].minerFault || (err.code === 'OUTCOME_UNKNOWN' && err.context.grpcCode !== undefined)) && !err.context.stalledMs;
  if (minerFault) breaker.failure(err.code);
  else if (admission === 'probe') breaker.release();
  return err;
}

/**
 * Runs one attempt under the breaker. Not an async function: on the core's hot path it adds no
 * async frame of its own, only the settlement of the attempt's promise.
 */
export function withBreaker<T>(breaker: Breaker, ctx: ErrorContext, attempt: () => Promise<T>): Promise<T> {
  let admission: Exclude<Admission, 'rejected'>;
  let running: Promise<T>;
  try {
    admission = admitAttempt(breaker, ctx);
  } catch (err) {
    return Promise.reject(err);
  }
  try {
    running = attempt();
  } catch (err) {
    running = Promise.reject(err);
  }
  return running.then(
    (value) => {
      breaker.success();
      return value;
    },
    (raw: unknown) => {
      throw settleFailure(breaker, admission, raw, ctx);
    },
  );
}

// Guards attempts with the miner's circuit breaker: OPEN fails fast with no traffic; only
// miner-side failures count against the miner. admitAttempt/settleFailure are the synchronous
// halves the core's hot path uses; withBreaker wraps one attempt with both.
import type { Admission, Breaker } from './breaker.js';
import { CODE_INFO } from './error-codes.js';
import { FleetError, type ErrorContext } from './fleet-error.js';

/** Admits one attempt, or throws CIRCUIT_OPEN (nothing is sent). */
export function admitAttempt(breaker: Breaker, ctx: ErrorContext): Exclude<Admission, 'rejected'> {
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
export function settleFailure(breaker: Breaker, admission: Exclude<Admission, 'rejected'>, raw: unknown, ctx: ErrorContext): FleetError {
  const err = FleetError.from(raw, ctx);
  const minerFault = CODE_INFO[err.code].minerFault || (err.code === 'OUTCOME_UNKNOWN' && err.context.grpcCode !== undefined);
  if (minerFault) breaker.failure(err.code);
  else if (admission === 'probe') breaker.release();
  return err;
}

export async function withBreaker<T>(breaker: Breaker, ctx: ErrorContext, attempt: () => Promise<T>): Promise<T> {
  const admission = admitAttempt(breaker, ctx);
  try {
    const value = await attempt();
    breaker.success();
    return value;
  } catch (raw) {
    throw settleFailure(breaker, admission, raw, ctx);
  }
}

// Wraps one attempt in the miner's circuit breaker: OPEN fails fast with no traffic; only
// miner-side failures count against the miner.
import type { Breaker } from './breaker.js';
import { CODE_INFO } from './error-codes.js';
import { FleetError, type ErrorContext } from './fleet-error.js';

export async function withBreaker<T>(breaker: Breaker, ctx: ErrorContext, attempt: () => Promise<T>): Promise<T> {
  const admission = breaker.admit();
  if (admission === 'rejected') {
    const why = breaker.lastFailure;
    throw new FleetError('CIRCUIT_OPEN', `circuit open for ${ctx.minerId ?? ctx.host}: recent calls kept failing${why ? ` (last: ${why})` : ''}`, {
      ...ctx,
      mayHaveReachedMiner: false,
    });
  }
  try {
    const value = await attempt();
    breaker.success();
    return value;
  } catch (raw) {
    const err = FleetError.from(raw, ctx);
    const minerFault = CODE_INFO[err.code].minerFault || (err.code === 'OUTCOME_UNKNOWN' && err.context.grpcCode !== undefined);
    if (minerFault) breaker.failure(err.code);
    else if (admission === 'probe') breaker.release();
    throw err;
  }
}

// Capped exponential backoff with full jitter: delay = random() × min(maxMs, baseMs × 2^(attempt−1)).

export interface BackoffOptions {
  baseDelayMs: number;
  maxDelayMs: number;
  /** Injected for tests; defaults to Math.random. */
  random?: () => number;
}

/** Delay before retry number `retry` (1 = the first retry). */
export function backoffDelayMs(retry: number, opts: BackoffOptions): number {
  const ceiling = Math.min(opts.maxDelayMs, opts.baseDelayMs * 2 ** Math.max(0, retry - 1));
  return Math.floor((opts.random ?? Math.random)() * ceiling);
}

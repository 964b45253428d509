// Time as a parameter: the real clock in production, a fake one in unit tests (no real sleeps).

export interface Clock {
  now(): number;
  /** Resolves after `ms`; rejects with an AbortError when the signal aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(abortError());
      const onAbort = () => {
        clearTimeout(timer);
        reject(abortError());
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    }),
};

export function abortError(): Error {
  const err = new Error('operation aborted');
  err.name = 'AbortError';
  return err;
}

/** A manually advanced clock for unit tests. */
export class FakeClock implements Clock {
  private t: number;
  private readonly waiters: { at: number; resolve: () => void }[] = [];

  constructor(startMs = 1_000_000) {
    this.t = startMs;
  }

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortError());
    return new Promise((resolve, reject) => {
      const w = { at: this.t + ms, resolve };
      this.waiters.push(w);
      signal?.addEventListener('abort', () => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(abortError());
      }, { once: true });
    });
  }

  /** Moves time forward, resolving sleeps that fall due, in order. */
  async advance(ms: number): Promise<void> {
    const target = this.t + ms;
    for (;;) {
      // Let pending promise chains run (and register their sleeps) before looking for the next due.
      await new Promise((resolve) => setImmediate(resolve));
      this.waiters.sort((a, b) => a.at - b.at);
      const next = this.waiters[0];
      if (!next || next.at > target) break;
      this.waiters.shift();
      this.t = next.at;
      next.resolve();
    }
    this.t = target;
  }

  get pendingSleeps(): number {
    return this.waiters.length;
  }
}

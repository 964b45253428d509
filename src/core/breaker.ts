// Per-miner circuit breaker: CLOSED → OPEN after N miner failures within a rolling window,
// OPEN fails fast for openMs, then HALF_OPEN lets exactly one probe through; M successes close it.
import type { Clock } from './clock.js';
import { HAS_FAILURES, type BreakerRecord, type BreakerStore } from './breaker-store.js';
import { ERROR_CODES, type ErrorCode } from './error-codes.js';

export type BreakerState = 'CLOSED' | 'OPEN' | 'HALF_OPEN';

export interface BreakerOptions {
  /** Miner failures within windowMs that open the breaker. */
  failureThreshold: number;
  /** The rolling window failures are counted in. */
  windowMs: number;
  /** How long OPEN fails fast before a probe is allowed. */
  openMs: number;
  /** Successful probes needed to close again. */
  halfOpenSuccesses: number;
  /** A probe that reports nothing for this long (its thread died) frees the slot for another. */
  probeLeaseMs: number;
}

export type Admission = 'allowed' | 'probe' | 'rejected';

const CLOSED = 0;
const OPEN = 1;
const HALF_OPEN = 2;

export class Breaker {
  constructor(
    private readonly store: BreakerStore,
    private readonly key: string,
    private readonly opts: BreakerOptions,
    private readonly clock: Clock,
  ) {}

  get state(): BreakerState {
    const rec = this.store.read(this.key);
    if (rec.state === OPEN) return this.clock.now() - rec.openedAtMs >= this.opts.openMs ? 'HALF_OPEN' : 'OPEN';
    return rec.state === HALF_OPEN ? 'HALF_OPEN' : 'CLOSED';
  }

  /**
   * Whether another miner's record holds nothing that still matters, so it may make room for a new
   * one: closed with every failure out of the window (it acts as a fresh one), or open with no call
   * through it for longer than a probe would have taken to come (its miner is gone, or moved).
   */
  private evictable(rec: BreakerRecord, now: number): boolean {
    if (rec.state === CLOSED) return rec.failures.every((t) => now - t >= this.opts.windowMs);
    return now - Math.max(rec.openedAtMs, rec.probeStartedAtMs) >= this.opts.openMs + this.opts.probeLeaseMs;
  }

  /** Off the hot path only (a breaker that is closed with nothing recorded never gets here). */
  private update<T>(fn: (rec: BreakerRecord) => T): T {
    return this.store.update(this.key, fn, (rec) => this.evictable(rec, this.clock.now()));
  }

  /** Asks to send one call. 'probe' means this call is the single half-open probe. */
  admit(): Admission {
    if ((this.store.peek(this.key) & 3) === CLOSED) return 'allowed'; // the common case: no lock, no copy
    const now = this.clock.now();
    return this.update((rec) => {
      if (rec.state === CLOSED) return 'allowed';
      if (rec.state === OPEN) {
        if (now - rec.openedAtMs < this.opts.openMs) return 'rejected';
        rec.state = HALF_OPEN;
        rec.halfOpenOk = 0;
        rec.probeStartedAtMs = now;
        return 'probe';
      }
      if (rec.probeStartedAtMs !== 0 && now - rec.probeStartedAtMs < this.opts.probeLeaseMs) return 'rejected';
      rec.probeStartedAtMs = now;
      return 'probe';
    });
  }

  success(): void {
    const peeked = this.store.peek(this.key);
    if (peeked === CLOSED) return; // the common case: closed, nothing recorded
    if (peeked === (CLOSED | HAS_FAILURES)) {
      // Failures that left the window are dropped; when none is left the record is fresh and
      // gives its room back (a miner that failed once stays recorded no longer than the window).
      const now = this.clock.now();
      this.update((rec) => {
        if (rec.state !== CLOSED) return;
        rec.failures = rec.failures.filter((t) => now - t < this.opts.windowMs);
        if (rec.failures.length === 0) rec.lastFailure = -1;
      });
      return;
    }
    this.update((rec) => {
      if (rec.state !== HALF_OPEN) return;
      rec.probeStartedAtMs = 0;
      rec.halfOpenOk++;
      if (rec.halfOpenOk >= this.opts.halfOpenSuccesses) resetClosed(rec);
    });
  }

  /** Why it last failed (for the CIRCUIT_OPEN message), if known. */
  get lastFailure(): ErrorCode | undefined {
    return ERROR_CODES[this.store.read(this.key).lastFailure];
  }

  /** Records a miner failure; true when this failure opened the breaker. */
  failure(code?: ErrorCode): boolean {
    const now = this.clock.now();
    return this.update((rec) => {
      if (code) rec.lastFailure = ERROR_CODES.indexOf(code);
      if (rec.state === HALF_OPEN || rec.state === OPEN) {
        const wasOpen = rec.state === OPEN;
        rec.state = OPEN;
        rec.openedAtMs = now;
        rec.probeStartedAtMs = 0;
        rec.halfOpenOk = 0;
        return !wasOpen;
      }
      rec.failures = rec.failures.filter((t) => now - t < this.opts.windowMs);
      rec.failures.push(now);
      if (rec.failures.length > this.opts.failureThreshold) rec.failures.shift();
      if (rec.failures.length >= this.opts.failureThreshold) {
        rec.state = OPEN;
        rec.openedAtMs = now;
        rec.failures = [];
        return true;
      }
      return false;
    });
  }

  /** The probe ended without saying anything about the miner (e.g. our own bad argument). */
  release(): void {
    this.update((rec) => {
      if (rec.state === HALF_OPEN) rec.probeStartedAtMs = 0;
    });
  }
}

function resetClosed(rec: BreakerRecord): void {
  rec.state = CLOSED;
  rec.lastFailure = -1;
  rec.failures = [];
  rec.halfOpenOk = 0;
  rec.probeStartedAtMs = 0;
  rec.openedAtMs = 0;
}

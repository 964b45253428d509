// Where breaker state lives: the store interface, and the in-memory store of one thread. The
// table shared by a worker's threads is in breaker-table.ts.

export interface BreakerRecord {
  /** 0 CLOSED, 1 OPEN, 2 HALF_OPEN */
  state: number;
  openedAtMs: number;
  /** 0 when no half-open probe is in flight. */
  probeStartedAtMs: number;
  halfOpenOk: number;
  /** Times of recent failures, oldest first. */
  failures: number[];
  /** Index in ERROR_CODES of the last miner failure (-1: none), to say why the breaker opened. */
  lastFailure: number;
}

export interface BreakerStore {
  read(key: string): BreakerRecord;
  /**
   * The record's state (0 CLOSED, 1 OPEN, 2 HALF_OPEN), plus HAS_FAILURES when failures are
   * recorded, read without locking or copying: the hot path's check. 0 means "closed, nothing
   * recorded", as for a miner never seen. A change racing with it is ordered as if it happened just after.
   */
  peek(key: string): number;
  /**
   * Atomically reads, changes (in place) and writes the record of `key`. A record left fresh
   * (closed, nothing recorded) gives its room back. `evictable` says which other miners' records
   * hold nothing that matters any more, should room be short: they may be dropped to make room.
   */
  update<T>(key: string, fn: (rec: BreakerRecord) => T, evictable?: (rec: BreakerRecord) => boolean): T;
}

/** Added to peek()'s state when the record holds failures. */
export const HAS_FAILURES = 4;

export const freshRecord = (): BreakerRecord => ({ state: 0, openedAtMs: 0, probeStartedAtMs: 0, halfOpenOk: 0, failures: [], lastFailure: -1 });

/** Closed with nothing recorded: the same as no record at all. */
export const isFresh = (rec: BreakerRecord): boolean => rec.state === 0 && rec.failures.length === 0 && rec.lastFailure < 0;

/** Records kept before the memory store first looks for evictable ones (it looks again at twice the size left). */
const MEMORY_SWEEP_MIN = 4_096;

export class MemoryBreakerStore implements BreakerStore {
  private readonly records = new Map<string, BreakerRecord>();
  private sweepAt = MEMORY_SWEEP_MIN;

  read(key: string): BreakerRecord {
    return structuredClone(this.records.get(key) ?? freshRecord());
  }

  peek(key: string): number {
    const rec = this.records.get(key);
    return rec ? rec.state + (rec.failures.length > 0 ? HAS_FAILURES : 0) : 0;
  }

  update<T>(key: string, fn: (rec: BreakerRecord) => T, evictable?: (rec: BreakerRecord) => boolean): T {
    const rec = this.records.get(key) ?? freshRecord();
    const result = fn(rec);
    if (isFresh(rec)) this.records.delete(key);
    else {
      this.records.set(key, rec);
      // Miners that failed once and were never seen again (a farm's addresses churn) would
      // otherwise stay for the life of the process: drop those that no longer matter, amortized.
      if (evictable && this.records.size >= this.sweepAt) {
        for (const [k, r] of this.records) if (k !== key && evictable(r)) this.records.delete(k);
        this.sweepAt = Math.max(MEMORY_SWEEP_MIN, this.records.size * 2);
      }
    }
    return result;
  }

  get size(): number {
    return this.records.size;
  }
}

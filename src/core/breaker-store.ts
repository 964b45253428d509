// Where breaker state lives: in memory (one thread), or in a SharedArrayBuffer table every
// worker thread maps, so a miner whose breaker opened in one thread fails fast in all of them.

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
   * The record's state (0 CLOSED, 1 OPEN, 2 HALF_OPEN) read without locking or copying: the hot
   * path's check. A change racing with it is ordered as if it happened just after.
   */
  peekState(key: string): number;
  /** Atomically reads, changes (in place) and writes the record of `key`. */
  update<T>(key: string, fn: (rec: BreakerRecord) => T): T;
}

const fresh = (): BreakerRecord => ({ state: 0, openedAtMs: 0, probeStartedAtMs: 0, halfOpenOk: 0, failures: [], lastFailure: -1 });

export class MemoryBreakerStore implements BreakerStore {
  private readonly records = new Map<string, BreakerRecord>();

  read(key: string): BreakerRecord {
    return structuredClone(this.records.get(key) ?? fresh());
  }

  peekState(key: string): number {
    return this.records.get(key)?.state ?? 0;
  }

  update<T>(key: string, fn: (rec: BreakerRecord) => T): T {
    const rec = this.records.get(key) ?? fresh();
    const result = fn(rec);
    if (rec.state === 0 && rec.failures.length === 0 && rec.lastFailure < 0) this.records.delete(key);
    else this.records.set(key, rec);
    return result;
  }

  get size(): number {
    return this.records.size;
  }
}

// ---- shared table ------------------------------------------------------------------------------

const I_LOCK = 0;
const I_H1 = 1;
const I_H2 = 2;
const I_STATE = 3;
const I_OK = 4;
const I_COUNT = 5;
const I_USED = 6;
const I_LAST = 7;
const INTS = 8;
const D_OPENED = 0;
const D_PROBE = 1;
const D_RING = 2;
const PROBES = 16;

/** Plain data (two SharedArrayBuffers): pass it to worker threads in `workerData`. */
export interface SharedBreakerTable {
  slots: number;
  ringSize: number;
  ints: SharedArrayBuffer;
  doubles: SharedArrayBuffer;
}

/** `slots` should exceed the number of miners (default fits 100,000 with room). */
export function createSharedBreakerTable(slots = 1 << 17, ringSize = 16): SharedBreakerTable {
  return {
    slots,
    ringSize,
    ints: new SharedArrayBuffer(slots * INTS * 4),
    doubles: new SharedArrayBuffer(slots * (D_RING + ringSize) * 8),
  };
}

function hash(key: string, seed: number): number {
  let h = seed >>> 0;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619) >>> 0;
  return h | 1; // never 0: 0 marks an unused slot
}

export class SharedBreakerStore implements BreakerStore {
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  private readonly stride: number;

  constructor(private readonly table: SharedBreakerTable) {
    this.i32 = new Int32Array(table.ints);
    this.f64 = new Float64Array(table.doubles);
    this.stride = D_RING + table.ringSize;
  }

  /** The key's two hashes (its identity in a slot) and the slot its probe run starts at. */
  private place(key: string): { h1: number; h2: number; start: number } {
    const h1 = hash(key, 2166136261);
    return { h1, h2: hash(key, 0x9e3779b9), start: (h1 >>> 0) % this.table.slots };
  }

  /** Finds (or claims) the key's slot and returns it locked; -1 when the probe run is full. */
  private lockSlot(key: string, claim: boolean): number {
    const { h1, h2, start } = this.place(key);
    for (let p = 0; p < PROBES; p++) {
      const slot = (start + p) % this.table.slots;
      const base = slot * INTS;
      while (Atomics.compareExchange(this.i32, base + I_LOCK, 0, 1) !== 0) {
        // spin: critical sections are a few field copies
      }
      const used = this.i32[base + I_USED] === 1;
      if (used && this.i32[base + I_H1] === h1 && this.i32[base + I_H2] === h2) return slot;
      if (!used && claim) {
        this.i32[base + I_USED] = 1;
        this.i32[base + I_H1] = h1;
        this.i32[base + I_H2] = h2;
        return slot;
      }
      Atomics.store(this.i32, base + I_LOCK, 0);
      if (!used) return -1; // not present (and not claiming)
    }
    return -1;
  }

  peekState(key: string): number {
    const { h1, h2, start } = this.place(key);
    for (let p = 0; p < PROBES; p++) {
      const base = ((start + p) % this.table.slots) * INTS;
      if (Atomics.load(this.i32, base + I_USED) !== 1) return 0; // never claimed: a fresh, closed breaker
      if (Atomics.load(this.i32, base + I_H1) === h1 && Atomics.load(this.i32, base + I_H2) === h2) return Atomics.load(this.i32, base + I_STATE);
    }
    return 0;
  }

  private unlock(slot: number): void {
    Atomics.store(this.i32, slot * INTS + I_LOCK, 0);
  }

  private load(slot: number): BreakerRecord {
    const b = slot * INTS;
    const d = slot * this.stride;
    const count = this.i32[b + I_COUNT] ?? 0;
    const failures: number[] = [];
    for (let k = 0; k < count; k++) failures.push(this.f64[d + D_RING + k] ?? 0);
    return {
      state: this.i32[b + I_STATE] ?? 0,
      openedAtMs: this.f64[d + D_OPENED] ?? 0,
      probeStartedAtMs: this.f64[d + D_PROBE] ?? 0,
      halfOpenOk: this.i32[b + I_OK] ?? 0,
      failures,
      lastFailure: (this.i32[b + I_LAST] ?? 0) - 1,
    };
  }

  private save(slot: number, rec: BreakerRecord): void {
    const b = slot * INTS;
    const d = slot * this.stride;
    const failures = rec.failures.slice(-this.table.ringSize);
    this.i32[b + I_STATE] = rec.state;
    this.i32[b + I_OK] = rec.halfOpenOk;
    this.i32[b + I_COUNT] = failures.length;
    this.i32[b + I_LAST] = rec.lastFailure + 1;
    this.f64[d + D_OPENED] = rec.openedAtMs;
    this.f64[d + D_PROBE] = rec.probeStartedAtMs;
    failures.forEach((t, k) => (this.f64[d + D_RING + k] = t));
  }

  read(key: string): BreakerRecord {
    const slot = this.lockSlot(key, false);
    if (slot < 0) return fresh();
    try {
      return this.load(slot);
    } finally {
      this.unlock(slot);
    }
  }

  update<T>(key: string, fn: (rec: BreakerRecord) => T): T {
    const slot = this.lockSlot(key, true);
    // A full probe run (more miners than the table was sized for): fail open, like no breaker.
    if (slot < 0) return fn(fresh());
    try {
      const rec = this.load(slot);
      const result = fn(rec);
      this.save(slot, rec);
      return result;
    } finally {
      this.unlock(slot);
    }
  }
}

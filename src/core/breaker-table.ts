// Breaker state shared by every worker thread: a SharedArrayBuffer table each thread maps, so a
// miner whose breaker opened in one thread fails fast in all of them.
//
// Open addressing with linear probing over at most PROBES slots. A slot is EMPTY (never used, or
// cleaned: a search stops there), LIVE (a miner's record) or FREED (a record that went back to
// fresh: searches pass over it, a claim may reuse it). Each slot has its own lock word for its
// record; claiming and freeing slots (the only changes to which miner owns a slot) also hold the
// table's claim lock, always taken before a slot lock. So a miner never owns two slots, and every
// slot between the start of a miner's run and its record is non-EMPTY, which lets a search stop at
// the first EMPTY slot.
import { HAS_FAILURES, freshRecord, isFresh, type BreakerRecord, type BreakerStore } from './breaker-store.js';

const I_LOCK = 0;
const I_H1 = 1;
const I_H2 = 2;
/** The state, plus HAS_FAILURES when failures are recorded (peek reads it in one load). */
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
const EMPTY = 0;
const LIVE = 1;
const FREED = 2;

/** Plain data (two SharedArrayBuffers): pass it to worker threads in `workerData`. */
export interface SharedBreakerTable {
  slots: number;
  ringSize: number;
  /** INTS per slot, then one word: the claim lock. */
  ints: SharedArrayBuffer;
  doubles: SharedArrayBuffer;
}

/**
 * `slots` should exceed the number of miners failing at once (default: 100,000 with room).
 * Records that went back to fresh give their slot back; when a miner's run of slots is full, a
 * record the breaker calls evictable (nothing recent in it) makes room. Only when every slot of
 * the run holds a live, recent breaker does the newcomer go without one (fails open).
 */
export function createSharedBreakerTable(slots = 1 << 17, ringSize = 16): SharedBreakerTable {
  return {
    slots,
    ringSize,
    ints: new SharedArrayBuffer((slots * INTS + 1) * 4),
    doubles: new SharedArrayBuffer(slots * (D_RING + ringSize) * 8),
  };
}

function hash(key: string, seed: number): number {
  let h = seed >>> 0;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619) >>> 0;
  return h | 1; // never 0: a cleared slot's hashes match no key
}

interface Place {
  h1: number;
  h2: number;
  start: number;
}

export class SharedBreakerStore implements BreakerStore {
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  private readonly stride: number;
  private readonly claimLock: number;

  constructor(private readonly table: SharedBreakerTable) {
    this.i32 = new Int32Array(table.ints);
    this.f64 = new Float64Array(table.doubles);
    this.stride = D_RING + table.ringSize;
    this.claimLock = table.slots * INTS;
  }

  /** The key's two hashes (its identity in a slot) and the slot its probe run starts at. */
  private place(key: string): Place {
    const h1 = hash(key, 2166136261);
    return { h1, h2: hash(key, 0x9e3779b9), start: (h1 >>> 0) % this.table.slots };
  }

  private slotAt(at: Place, p: number): number {
    return (at.start + p) % this.table.slots;
  }

  private lock(word: number): void {
    while (Atomics.compareExchange(this.i32, word, 0, 1) !== 0) {
      // spin: critical sections are a few field copies
    }
  }

  private unlock(word: number): void {
    Atomics.store(this.i32, word, 0);
  }

  private owns(slot: number, at: Place): boolean {
    const base = slot * INTS;
    return this.i32[base + I_USED] === LIVE && this.i32[base + I_H1] === at.h1 && this.i32[base + I_H2] === at.h2;
  }

  /** The key's slot, returned locked; -1 when the key has none. */
  private find(at: Place): number {
    for (let p = 0; p < PROBES; p++) {
      const slot = this.slotAt(at, p);
      this.lock(slot * INTS + I_LOCK);
      if (this.owns(slot, at)) return slot;
      const used = this.i32[slot * INTS + I_USED];
      this.unlock(slot * INTS + I_LOCK);
      if (used === EMPTY) return -1;
    }
    return -1;
  }

  /**
   * The key's slot, claimed if it has none, returned locked; -1 when every slot of its run holds
   * another miner's breaker that still matters.
   */
  private claim(at: Place, evictable?: (rec: BreakerRecord) => boolean): number {
    this.lock(this.claimLock);
    try {
      const found = this.find(at); // claimed by another thread since our own search?
      if (found >= 0) return found;
      for (let p = 0; p < PROBES; p++) {
        const slot = this.slotAt(at, p);
        this.lock(slot * INTS + I_LOCK);
        if (this.i32[slot * INTS + I_USED] !== LIVE) return this.take(slot, at);
        this.unlock(slot * INTS + I_LOCK);
      }
      if (!evictable) return -1;
      for (let p = 0; p < PROBES; p++) {
        const slot = this.slotAt(at, p);
        this.lock(slot * INTS + I_LOCK);
        if (evictable(this.load(slot))) return this.take(slot, at);
        this.unlock(slot * INTS + I_LOCK);
      }
      return -1;
    } finally {
      this.unlock(this.claimLock);
    }
  }

  /** Makes the (locked) slot the key's, with a fresh record. Claim lock held. */
  private take(slot: number, at: Place): number {
    const base = slot * INTS;
    this.save(slot, freshRecord());
    this.i32[base + I_H1] = at.h1;
    this.i32[base + I_H2] = at.h2;
    Atomics.store(this.i32, base + I_USED, LIVE);
    return slot;
  }

  /** Gives the key's slot back if its record is still fresh. */
  private free(at: Place): void {
    this.lock(this.claimLock);
    try {
      const slot = this.find(at);
      if (slot < 0) return;
      const base = slot * INTS;
      if (!isFresh(this.load(slot))) return this.unlock(base);
      this.i32[base + I_H1] = 0;
      this.i32[base + I_H2] = 0;
      const next = (slot + 1) % this.table.slots;
      if (this.i32[next * INTS + I_USED] !== EMPTY) {
        Atomics.store(this.i32, base + I_USED, FREED);
        return this.unlock(base);
      }
      // Followed by an EMPTY slot, no search needs to pass this one (nor FREED ones just before it).
      Atomics.store(this.i32, base + I_USED, EMPTY);
      this.unlock(base);
      for (let k = 1, prev = slot; k < this.table.slots; k++) {
        prev = (prev - 1 + this.table.slots) % this.table.slots;
        const b = prev * INTS;
        if (this.i32[b + I_USED] !== FREED) break;
        this.lock(b);
        Atomics.store(this.i32, b + I_USED, EMPTY);
        this.unlock(b);
      }
    } finally {
      this.unlock(this.claimLock);
    }
  }

  peek(key: string): number {
    const at = this.place(key);
    for (let p = 0; p < PROBES; p++) {
      const base = this.slotAt(at, p) * INTS;
      const used = Atomics.load(this.i32, base + I_USED);
      if (used === EMPTY) return 0; // no record: a fresh, closed breaker
      // A slot being handed to another miner at this instant may pair this key's hashes with that
      // miner's state. Only a record that had gone back to fresh, or one old enough to be evicted
      // (forgotten), is ever handed on, so the worst case is one call sent down the locked path,
      // which reads the record properly.
      if (used === LIVE && Atomics.load(this.i32, base + I_H1) === at.h1 && Atomics.load(this.i32, base + I_H2) === at.h2) return Atomics.load(this.i32, base + I_STATE);
    }
    return 0;
  }

  private load(slot: number): BreakerRecord {
    const b = slot * INTS;
    const d = slot * this.stride;
    const count = this.i32[b + I_COUNT] ?? 0;
    const failures: number[] = [];
    for (let k = 0; k < count; k++) failures.push(this.f64[d + D_RING + k] ?? 0);
    return {
      state: (this.i32[b + I_STATE] ?? 0) & 3,
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
    this.i32[b + I_OK] = rec.halfOpenOk;
    this.i32[b + I_COUNT] = failures.length;
    this.i32[b + I_LAST] = rec.lastFailure + 1;
    this.f64[d + D_OPENED] = rec.openedAtMs;
    this.f64[d + D_PROBE] = rec.probeStartedAtMs;
    failures.forEach((t, k) => (this.f64[d + D_RING + k] = t));
    Atomics.store(this.i32, b + I_STATE, rec.state + (failures.length > 0 ? HAS_FAILURES : 0));
  }

  read(key: string): BreakerRecord {
    const slot = this.find(this.place(key));
    if (slot < 0) return freshRecord();
    try {
      return this.load(slot);
    } finally {
      this.unlock(slot * INTS + I_LOCK);
    }
  }

  update<T>(key: string, fn: (rec: BreakerRecord) => T, evictable?: (rec: BreakerRecord) => boolean): T {
    const at = this.place(key);
    let slot = this.find(at);
    if (slot < 0) slot = this.claim(at, evictable);
    // Every slot of the run holds a breaker that still matters: fail open, like no breaker.
    if (slot < 0) return fn(freshRecord());
    let result: T;
    let fresh: boolean;
    try {
      const rec = this.load(slot);
      result = fn(rec);
      this.save(slot, rec);
      fresh = isFresh(rec);
    } finally {
      this.unlock(slot * INTS + I_LOCK);
    }
    if (fresh) this.free(at);
    return result;
  }

  /** Slots holding a record (for tests and diagnostics; not atomic as a whole). */
  get liveSlots(): number {
    let n = 0;
    for (let slot = 0; slot < this.table.slots; slot++) if (Atomics.load(this.i32, slot * INTS + I_USED) === LIVE) n++;
    return n;
  }
}

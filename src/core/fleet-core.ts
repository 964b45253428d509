// The per-thread core: options, clock, channel pool, login sessions, API-version cache and breaker
// store, shared by every MinerClient created in this thread.
import { useFastAsyncResourceBind } from './async-bind.js';
import { Breaker } from './breaker.js';
import { MemoryBreakerStore, type BreakerStore } from './breaker-store.js';
import { systemClock, type Clock } from './clock.js';
import { MinerClient, type MinerTarget } from './miner-client.js';
import type { ApiVersion } from './methods.js';
import { parseCoreOptions, type CoreOptions, type CoreOptionsInput } from './options.js';
import { ConnectionPool, type ClientFactory } from './pool.js';
import type { RetryDeps } from './retry.js';
import { SessionCache } from './sessions.js';

/** How often per-miner state is swept (a pass over a few maps; 100,000 miners take a few ms). */
const MINER_STATE_SWEEP_MS = 60_000;

export interface CoreDeps {
  clock?: Clock;
  random?: () => number;
  /** Shared between threads by the workers; in-memory by default. */
  breakerStore?: BreakerStore;
  clientFactory?: ClientFactory;
}

export class FleetCore {
  readonly options: CoreOptions;
  readonly clock: Clock;
  readonly random: () => number;
  readonly pool: ConnectionPool;
  readonly sessions: SessionCache;
  readonly breakerStore: BreakerStore;
  /** Clock and randomness for in-call retries (one object, not one per call). */
  readonly retryDeps: RetryDeps;
  private readonly stateTimer: NodeJS.Timeout;
  private readonly versions = new Map<string, { version: ApiVersion; atMs: number }>();
  /** Methods a miner answered UNIMPLEMENTED to, until its version is read again. */
  private readonly unsupported = new Map<string, Set<string>>();

  constructor(options: CoreOptionsInput = {}, deps: CoreDeps = {}) {
    this.options = parseCoreOptions(options);
    useFastAsyncResourceBind(); // Node 20's costs 10–20 µs per gRPC call (async-bind.ts)
    this.clock = deps.clock ?? systemClock;
    this.random = deps.random ?? Math.random;
    this.retryDeps = { clock: this.clock, random: this.random };
    this.breakerStore = deps.breakerStore ?? new MemoryBreakerStore();
    this.pool = new ConnectionPool(this.options.pool, this.clock, deps.clientFactory);
    this.sessions = new SessionCache(() => this.clock.now());
    this.stateTimer = setInterval(() => this.sweepMinerState(), MINER_STATE_SWEEP_MS);
    this.stateTimer.unref();
  }

  /**
   * Forgets what this thread keeps per miner once it no longer holds: expired API versions (and the
   * methods found missing under them) and sessions idle past `sessionIdleMs`. A long-running worker
   * on a farm whose addresses churn keeps memory for the miners it polls, not for every miner it
   * ever saw. (Channels have the pool's own TTL; breakers forget in their store.)
   */
  sweepMinerState(): void {
    const now = this.clock.now();
    for (const [key, v] of this.versions) if (now - v.atMs > this.options.versionCacheTtlMs) this.versions.delete(key);
    for (const key of this.unsupported.keys()) if (!this.versions.has(key)) this.unsupported.delete(key);
    this.sessions.sweep(this.options.sessionIdleMs);
  }

  /** Miners this thread keeps something for (for tests and diagnostics). */
  get minerStateCounts(): { sessions: number; versions: number; unsupported: number } {
    return { sessions: this.sessions.size, versions: this.versions.size, unsupported: this.unsupported.size };
  }

  /** A client for one miner; cheap to create (one per job), state lives in the core. */
  miner(target: MinerTarget): MinerClient {
    return new MinerClient(this, target);
  }

  breaker(minerKey: string): Breaker {
    return new Breaker(this.breakerStore, minerKey, this.options.breaker, this.clock);
  }

  cachedVersion(minerKey: string): ApiVersion | undefined {
    const v = this.versions.get(minerKey);
    if (!v) return undefined;
    if (this.clock.now() - v.atMs > this.options.versionCacheTtlMs) {
      this.versions.delete(minerKey);
      return undefined;
    }
    return v.version;
  }

  rememberVersion(minerKey: string, version: ApiVersion): void {
    this.versions.set(minerKey, { version, atMs: this.clock.now() });
    this.unsupported.delete(minerKey);
  }

  markUnsupported(minerKey: string, method: string): void {
    let set = this.unsupported.get(minerKey);
    if (!set) this.unsupported.set(minerKey, (set = new Set()));
    set.add(method);
  }

  isUnsupported(minerKey: string, method: string): boolean {
    return this.cachedVersion(minerKey) !== undefined && (this.unsupported.get(minerKey)?.has(method) ?? false);
  }

  /** Closes every channel and timer: the thread can exit afterwards. */
  close(): void {
    clearInterval(this.stateTimer);
    this.pool.close();
  }
}

// Per-thread pool of miner channels: reuse per miner, LRU eviction past maxConnections (closing the
// evicted client), idle TTL, health from consecutive failures, stats, and a close() that leaves nothing.
// A channel is leased for each call or stream and never closed under one: eviction takes the least
// recently used channels nobody is using (past maxConnections only while more miners than that are
// being called at once), and a channel retired while in use closes when its last lease ends. A job
// holds its miner's key for all of its calls: its channel is not evicted between them (a pool smaller
// than the jobs in flight would otherwise reconnect every call, and pile up closing sockets).
import * as grpc from '@grpc/grpc-js';
import { MinerChannel, type ClientLike } from './channel.js';
import type { Clock } from './clock.js';
import type { CoreOptions } from './options.js';

export interface PoolTarget {
  /** Pool key: address plus TLS identity. */
  key: string;
  address: string;
  /** Built only when a channel is created. */
  credentials: () => grpc.ChannelCredentials;
  channelOptions: () => grpc.ChannelOptions;
  transport: 'plaintext' | 'tls';
}

export interface PoolStats {
  open: number;
  idle: number;
  connecting: number;
  ready: number;
  /** Channels in reconnect backoff after a failed connection. */
  failed: number;
  /** Channels a call or stream is using now (leased). */
  inUse: number;
  created: number;
  evictions: number;
  expired: number;
  rebuilt: number;
}

export type ClientFactory = (address: string, credentials: grpc.ChannelCredentials, options: grpc.ChannelOptions) => ClientLike;

const grpcClientFactory: ClientFactory = (address, credentials, options) => new grpc.Client(address, credentials, options);

export class ConnectionPool {
  /** Map order is recency order: the first entry is the least recently used. */
  private readonly channels = new Map<string, MinerChannel>();
  /** Keys a job is holding (see {@link hold}), with how many jobs hold each. */
  private readonly holds = new Map<string, number>();
  private readonly sweepTimer: NodeJS.Timeout;
  private counters = { created: 0, evictions: 0, expired: 0, rebuilt: 0 };
  private closed = false;

  constructor(
    private readonly opts: CoreOptions['pool'],
    private readonly clock: Clock,
    private readonly createClient: ClientFactory = grpcClientFactory,
  ) {
    this.sweepTimer = setInterval(() => this.sweep(), opts.sweepIntervalMs);
    this.sweepTimer.unref();
  }

  /**
   * Leases the miner's channel, created if missing, expired or unhealthy, and marks it most recently
   * used. Every lease ends with {@link release}.
   */
  acquire(target: PoolTarget): MinerChannel {
    if (this.closed) throw new Error('connection pool is closed');
    const now = this.clock.now();
    let ch = this.channels.get(target.key);
    if (ch) {
      this.channels.delete(target.key);
      if ((now - ch.lastUsedAtMs > this.opts.idleTtlMs && !this.holds.has(target.key)) || ch.state === 'closed') {
        this.retire(ch);
        this.counters.expired++;
        ch = undefined;
      } else if (ch.consecutiveFailures >= this.opts.unhealthyAfterFailures) {
        this.retire(ch);
        this.counters.rebuilt++;
        ch = undefined;
      }
    }
    if (!ch) {
      ch = new MinerChannel(target.key, this.createClient(target.address, target.credentials(), target.channelOptions()), target.transport, now);
      this.counters.created++;
    }
    ch.lastUsedAtMs = now;
    ch.leases++;
    this.channels.set(target.key, ch);
    this.evictIdle();
    return ch;
  }

  /** Ends a lease from {@link acquire}; a channel retired meanwhile closes with its last lease. */
  release(ch: MinerChannel): void {
    ch.leases--;
    if (ch.leases > 0) return;
    if (ch.retired) ch.close();
    else this.evictIdle();
  }

  /**
   * Keeps the channel of `key` out of eviction and TTL expiry until the returned function is called:
   * one job's calls to its miner go over one connection, however many other miners are being called.
   */
  hold(key: string): () => void {
    this.holds.set(key, (this.holds.get(key) ?? 0) + 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      const left = (this.holds.get(key) ?? 1) - 1;
      if (left > 0) return void this.holds.set(key, left);
      this.holds.delete(key);
      this.evictIdle();
    };
  }

  /** Past maxConnections, closes the least recently used channels that no call or job is using. */
  private evictIdle(): void {
    let excess = this.channels.size - this.opts.maxConnections;
    if (excess <= 0) return;
    for (const [key, oldest] of this.channels) {
      if (oldest.leases > 0 || this.holds.has(key)) continue;
      this.channels.delete(key);
      oldest.close();
      this.counters.evictions++;
      if (--excess === 0) return;
    }
  }

  /** Takes a channel out of the pool: closed now, or when the calls using it end. */
  private retire(ch: MinerChannel): void {
    ch.retired = true;
    if (ch.leases === 0) ch.close();
  }

  reportSuccess(ch: MinerChannel): void {
    ch.consecutiveFailures = 0;
  }

  /** A transport-level failure on this channel (counts toward rebuilding it). */
  reportFailure(ch: MinerChannel): void {
    ch.consecutiveFailures++;
  }

  has(key: string): boolean {
    return this.channels.has(key);
  }

  /** Closes channels idle longer than the TTL (not one in use: a long status stream keeps its channel). */
  sweep(): void {
    const now = this.clock.now();
    for (const [key, ch] of this.channels) {
      if (ch.leases === 0 && !this.holds.has(key) && now - ch.lastUsedAtMs > this.opts.idleTtlMs) {
        this.channels.delete(key);
        ch.close();
        this.counters.expired++;
      }
    }
  }

  stats(): PoolStats {
    const s: PoolStats = { open: this.channels.size, idle: 0, connecting: 0, ready: 0, failed: 0, inUse: 0, ...this.counters };
    for (const ch of this.channels.values()) {
      if (ch.leases > 0) s.inUse++;
      const st = ch.state;
      if (st === 'idle') s.idle++;
      else if (st === 'connecting') s.connecting++;
      else if (st === 'ready') s.ready++;
      else if (st === 'backoff') s.failed++;
    }
    return s;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.sweepTimer);
    for (const ch of this.channels.values()) ch.close();
    this.channels.clear();
  }
}

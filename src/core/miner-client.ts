// A client for one miner: each logical call goes capability check → auth → retry(breaker(attempt)),
// with a deadline on every attempt and the attempts counted for the outcome.
import type { MinerChannel } from './channel.js';
import type { PoolTarget } from './pool.js';
import { channelCredentials } from './tls.js';
import { grpcTarget, hostPort, minerChannelOptions } from './channel-options.js';
import { withBreaker } from './breaker-guard.js';
import type { Breaker } from './breaker.js';
import { FleetError, type ErrorContext } from './fleet-error.js';
import { blameStall } from './stall.js';
import type { FleetCore } from './fleet-core.js';
import { METHODS, formatVersion, versionAtLeast, type ApiVersion, type MethodName, type MethodSpec } from './methods.js';
import { invokeUnary, type UnaryReply } from './rpc.js';
import { withRetry, writeWindow, type RetryContext } from './retry.js';
import type { Credentials } from './sessions.js';
import type { TlsMaterial } from './tls.js';
import type * as T from './types.js';

export interface MinerTarget {
  id: string;
  host: string;
  port: number;
  credentials: Credentials;
  tls?: TlsMaterial;
}

/** What a job reports about its calls: the worst call's attempts, and totals. */
export interface CallStats {
  calls: number;
  attempts: number;
  maxAttempts: number;
  logins: number;
}

export interface CallOptions {
  signal?: AbortSignal;
  /** Overrides the per-kind attempt timeout. */
  timeoutMs?: number;
  /** The miner is expected to be down (rebooting): failures do not count against its breaker. */
  expectOutage?: boolean;
  /**
   * Time (ms, the core's clock) after which this call's writes are no longer sent: the worker's hold on
   * its job (BullMQ's lock) may have ended by then, and another worker taken the change over. A write
   * due later (this process was frozen, or slowed, in between) fails CANCELLED with
   * `writeWindowClosed`, unsent; its gRPC deadline never reaches past it.
   */
  writeNotAfterMs?: number;
}

const OLDEST_API: ApiVersion = { major: 1, minor: 0, patch: 0 };

/** Codes that say the connection itself is bad: the pool counts them towards rebuilding the channel (one whose connect failed for want of a descriptor stays failed through grpc-js's reconnect backoff: rebuilt, it tries again at once). */
const TRANSPORT_FAULTS: ReadonlySet<string> = new Set(['MINER_UNREACHABLE', 'MINER_TIMEOUT', 'CONNECTION_LOST', 'PROTOCOL_ERROR', 'TLS_ERROR', 'WORKER_OUT_OF_RESOURCES']);

export class MinerClient {
  readonly key: string;
  readonly stats: CallStats = { calls: 0, attempts: 0, maxAttempts: 0, logins: 0 };
  readonly transport: 'plaintext' | 'tls';
  private breakerOf: Breaker | undefined;
  private poolTarget: PoolTarget | undefined;

  constructor(
    private readonly core: FleetCore,
    readonly target: MinerTarget,
  ) {
    this.transport = target.tls ? 'tls' : 'plaintext';
    this.key = `${target.host}:${target.port}${target.tls ? `#${target.tls.id}` : ''}`;
  }

  private context(operation: string, spec: MethodSpec): ErrorContext {
    return { minerId: this.target.id, host: this.target.host, port: this.target.port, operation, mutation: spec.mutation, transport: this.transport };
  }

  /** The miner's API version (GetApiVersion needs no token), cached per miner. */
  async apiVersion(opts: CallOptions = {}): Promise<ApiVersion> {
    const cached = this.core.cachedVersion(this.key);
    if (cached) return cached;
    let version: ApiVersion;
    try {
      const v = await this.send<T.ApiVersionReply>('GetApiVersion', {}, undefined, opts);
      version = { major: Number(v.response.major), minor: Number(v.response.minor), patch: Number(v.response.patch) };
    } catch (err) {
      if (!(err instanceof FleetError) || err.code !== 'UNSUPPORTED_BY_FIRMWARE') throw err;
      version = OLDEST_API; // firmware older than the version service itself
    }
    this.core.rememberVersion(this.key, version);
    return version;
  }

  /** Fails with UNSUPPORTED_BY_FIRMWARE, sending nothing, when the firmware lacks the method. */
  async supports(method: MethodName, opts: CallOptions = {}): Promise<boolean> {
    const spec: MethodSpec = METHODS[method];
    if (!spec.since) return true;
    return versionAtLeast(await this.apiVersion(opts), spec.since);
  }

  /** One logical call of `method`. */
  async call<R>(method: MethodName, request: object = {}, opts: CallOptions = {}): Promise<R> {
    const spec: MethodSpec = METHODS[method];
    if (this.core.isUnsupported(this.key, method)) {
      throw new FleetError('UNSUPPORTED_BY_FIRMWARE', `${method} is not implemented by this miner's firmware (answered UNIMPLEMENTED before)`, {
        ...this.context(method, spec),
        mayHaveReachedMiner: false,
        attempts: 0,
      });
    }
    if (spec.since) {
      const v = this.core.cachedVersion(this.key) ?? (await this.apiVersion(opts));
      if (!versionAtLeast(v, spec.since)) {
        throw new FleetError('UNSUPPORTED_BY_FIRMWARE', `${method} needs API ${spec.since.join('.')}, miner speaks ${formatVersion(v)}`, {
          ...this.context(method, spec),
          mayHaveReachedMiner: false,
          attempts: 0,
        });
      }
    }
    if (!spec.auth) return (await this.send<R>(method, request, undefined, opts)).response;
    let token = this.core.sessions.cached(this.key) ?? (await this.token(opts));
    let relogged = false;
    try {
      return (
        await this.send<R>(method, request, async () => {
          // Called when an attempt answered UNAUTHENTICATED: log in again once and replay.
          if (relogged) return undefined;
          relogged = true;
          this.core.sessions.invalidate(this.key, token);
          token = await this.token(opts);
          return token;
        }, opts, () => token)
      ).response;
    } catch (err) {
      const e = FleetError.from(err);
      if (e.code === 'UNSUPPORTED_BY_FIRMWARE') this.core.markUnsupported(this.key, method);
      throw e;
    }
  }

  /** The cached session token, logging in (once, shared) when there is none. */
  token(opts: CallOptions = {}): Promise<string> {
    return this.core.sessions.token(this.key, () => this.login(opts));
  }

  /** Drops a token the miner refused, so the next token() logs in again. */
  invalidateToken(token: string): void {
    this.core.sessions.invalidate(this.key, token);
  }

  /** Leases this miner's pooled channel: the pool keeps it open until {@link releaseChannel}. */
  channel(): MinerChannel {
    return this.core.pool.acquire((this.poolTarget ??= this.makePoolTarget()));
  }

  releaseChannel(channel: MinerChannel): void {
    this.core.pool.release(channel);
  }

  /** Keeps this miner's channel open between calls until the returned function is called (one job's calls). */
  holdChannel(): () => void {
    return this.core.pool.hold(this.key);
  }

  /** How the pool finds or builds this miner's channel (built once per client, not per attempt). */
  private makePoolTarget(): PoolTarget {
    const { tls } = this.target;
    return {
      key: this.key,
      address: grpcTarget(this.target.host, this.target.port),
      credentials: () => channelCredentials(tls),
      channelOptions: () => minerChannelOptions(this.core.options, tls),
      transport: this.transport,
    };
  }

  private async login(opts: CallOptions): Promise<string> {
    this.stats.logins++;
    const { username, password } = this.target.credentials;
    try {
      const r = await this.send<{ token?: string }>('Login', { username, password }, undefined, { ...opts, timeoutMs: this.core.options.loginTimeoutMs });
      // API ≥ 1.1 returns the token in the body; older ones only in the `authorization` header.
      const token = r.response.token || String(r.header?.get('authorization')[0] ?? '');
      if (!token) throw new FleetError('MINER_AUTH_FAILED', 'login answered without a token', this.context('Login', METHODS.Login));
      return token;
    } catch (err) {
      const e = FleetError.from(err);
      if (e.code === 'MINER_AUTH_FAILED') {
        // The message names the user, never the password.
        throw new FleetError('MINER_AUTH_FAILED', `login refused for user "${username}": ${e.message}`, e.context);
      }
      throw e;
    }
  }

  /**
   * Sends with retries. `reauth` is consulted once when an attempt answers UNAUTHENTICATED;
   * `currentToken` gives the token each attempt should carry. Hot path: one async frame per attempt
   * (the breaker guard adds none), no wait when the channel is already ready.
   */
  private async send<R>(
    method: MethodName,
    request: object,
    reauth: (() => Promise<string | undefined>) | undefined,
    opts: CallOptions,
    currentToken?: () => string,
  ): Promise<UnaryReply<R>> {
    const spec: MethodSpec = METHODS[method];
    const o = this.core.options;
    const ctx = this.context(method, spec);
    const kindTimeoutMs = opts.timeoutMs ?? (spec.mutation ? o.mutationTimeoutMs : o.readTimeoutMs);
    // A miner expected to be down (rebooting) is not judged by its breaker.
    const breaker = opts.expectOutage ? undefined : (this.breakerOf ??= this.core.breaker(this.key));
    let attempts = 0;
    this.stats.calls++;
    const attempt = ({ remainingMs }: RetryContext): Promise<UnaryReply<R>> => {
      attempts++;
      this.stats.attempts++;
      const timeoutMs = Math.min(kindTimeoutMs, remainingMs);
      const sendOnce = async (): Promise<UnaryReply<R>> => {
        try {
          return await this.attemptOnce<R>(method, request, ctx, timeoutMs, currentToken?.(), opts);
        } catch (err) {
          const e = FleetError.from(err, ctx);
          if (e.code !== 'MINER_AUTH_FAILED' || !reauth || (await reauth()) === undefined) throw e;
          attempts++;
          this.stats.attempts++;
          return this.attemptOnce<R>(method, request, ctx, timeoutMs, currentToken?.(), opts);
        }
      };
      return breaker ? withBreaker(breaker, ctx, sendOnce) : sendOnce();
    };
    try {
      const { value } = await withRetry(attempt, { ...o.retry, budgetMs: Math.max(o.callBudgetMs, kindTimeoutMs) }, opts.signal ? { ...this.core.retryDeps, signal: opts.signal } : this.core.retryDeps, spec);
      return value;
    } catch (err) {
      throw FleetError.from(err, ctx).with({ attempts });
    } finally {
      if (attempts > this.stats.maxAttempts) this.stats.maxAttempts = attempts;
    }
  }

  private async attemptOnce<R>(
    method: string,
    request: object,
    ctx: ErrorContext,
    timeoutMs: number,
    token: string | undefined,
    { signal, writeNotAfterMs }: CallOptions,
  ): Promise<UnaryReply<R>> {
    if (signal?.aborted) throw new FleetError('CANCELLED', 'operation aborted', { ...ctx, mayHaveReachedMiner: false });
    const channel = this.channel(); // leased: the pool closes no channel under a call
    let dueAt = Infinity; // when the wait under way times out (performance.now()): a timeout seen long after is this process's stall (stall.ts)
    try {
      if (channel.state !== 'ready') {
        const connectMs = Math.min(this.core.options.connectTimeoutMs, timeoutMs);
        dueAt = performance.now() + connectMs;
        if ((await channel.waitReady(connectMs)) === 'timeout') {
          // A transport fault: counted against the channel by the catch below.
          throw new FleetError('MINER_TIMEOUT', `no connection to ${hostPort(this.target.host, this.target.port)} within ${connectMs} ms`, { ...ctx, mayHaveReachedMiner: false });
        }
        // 'failed' still sends: grpc-js fails the call at once with the real reason (refused, TLS, …).
      }
      // Checked last, once connected: a write is sent now or never.
      const callMs = ctx.mutation && writeNotAfterMs !== undefined ? writeWindow(method, writeNotAfterMs - this.core.clock.now(), timeoutMs, ctx) : timeoutMs;
      dueAt = performance.now() + callMs;
      const reply = await invokeUnary<R>(channel, method, request, callMs, token, signal, method === 'Login');
      this.core.pool.reportSuccess(channel);
      return reply;
    } catch (err) {
      const e = blameStall(FleetError.from(err, ctx), dueAt);
      if (TRANSPORT_FAULTS.has(e.code) && !e.context.stalledMs) this.core.pool.reportFailure(channel);
      throw e;
    } finally {
      this.releaseChannel(channel);
    }
  }

  getMinerDetails(o?: CallOptions) { return this.call<T.MinerDetails>('GetMinerDetails', {}, o); }
  getMinerStats(o?: CallOptions) { return this.call<T.MinerStats>('GetMinerStats', {}, o); }
  getErrors(o?: CallOptions) { return this.call<{ errors: T.MinerErrorEntry[] }>('GetErrors', {}, o); }
  getHashboards(o?: CallOptions) { return this.call<{ hashboards: T.Hashboard[] }>('GetHashboards', {}, o); }
  getCoolingState(o?: CallOptions) { return this.call<T.CoolingState>('GetCoolingState', {}, o); }
  getPoolGroups(o?: CallOptions) { return this.call<{ poolGroups: T.PoolGroupReadSide[] }>('GetPoolGroups', {}, o); }
  getTunerState(o?: CallOptions) { return this.call<T.TunerState>('GetTunerState', {}, o); }
  getMinerConfiguration(o?: CallOptions) { return this.call<T.MinerConfiguration>('GetMinerConfiguration', {}, o); }
  getConstraints(o?: CallOptions) { return this.call<T.Constraints>('GetConstraints', {}, o); }
  getLocateDeviceStatus(o?: CallOptions) { return this.call<{ enabled: boolean }>('GetLocateDeviceStatus', {}, o); }

  setPowerTarget(watt: number, o?: CallOptions) {
    return this.call<{ powerTarget: T.Power | null }>('SetPowerTarget', { saveAction: 'SAVE_ACTION_SAVE_AND_APPLY', powerTarget: { watt } }, o);
  }
  setHashrateTarget(terahashPerSecond: number, o?: CallOptions) {
    return this.call<{ hashrateTarget: T.TeraHashrate | null }>('SetHashrateTarget', { saveAction: 'SAVE_ACTION_SAVE_AND_APPLY', hashrateTarget: { terahashPerSecond } }, o);
  }
  setPoolGroups(poolGroups: T.PoolGroupConfiguration[], o?: CallOptions) {
    return this.call<{ poolGroups: T.PoolGroupConfiguration[] }>('SetPoolGroups', { saveAction: 'SAVE_ACTION_SAVE_AND_APPLY', poolGroups }, o);
  }
  pauseMining(o?: CallOptions) { return this.call<{ alreadyPaused: boolean }>('PauseMining', {}, o); }
  resumeMining(o?: CallOptions) { return this.call<{ alreadyMining: boolean }>('ResumeMining', {}, o); }
  reboot(o?: CallOptions) { return this.call<Record<string, never>>('Reboot', {}, o); }
  setLocateDeviceStatus(enable: boolean, o?: CallOptions) { return this.call<{ enabled: boolean }>('SetLocateDeviceStatus', { enable }, o); }
}

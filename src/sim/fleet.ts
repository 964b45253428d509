// A simulated Braiins OS fleet in this process: one gRPC server, one loopback listener per miner.
import * as grpc from '@grpc/grpc-js';
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { SERVICE_KEYS, serviceDefinition, type ServiceKey } from '../core/proto.js';
import type { FleetControl, MutationRecord, SimFleetOptions, SimMinerInfo } from './control.js';
import type { MinerFaults } from './faults.js';
import { API_LATEST, API_OLD, SIM_PASSWORD, createMinerState, supportsApi, type SimMinerState } from './miner.js';
import { METHODS, SimStatusError } from './services.js';
import { toServiceError } from './method-spec.js';
import { SessionTable, loginReply } from './sessions.js';
import { createEndpoint, dropSockets, reconcileListener, type MinerEndpoint } from './transport.js';
import { MALFORMED_BYTES, PAD_REPLY, RAW_REPLY, wrapServiceDefinition } from './wire.js';
import { seededRandom } from './prng.js';
import { listenProblem } from './addresses.js';
import { policedConnection, type PingPolicy, type PingStats } from './ping-policy.js';

export type { SimFleetOptions, SimMinerSpec, SimTlsOptions } from './control.js';

interface MinerRuntime {
  state: SimMinerState;
  endpoint: MinerEndpoint;
  callsSeen: number;
  callCounts: Record<string, number>;
  statusListeners: Set<(padBytes?: number) => void>;
  rebootTimer?: NodeJS.Timeout;
}

type Reply = { body: Record<string | symbol, unknown>; header?: grpc.Metadata };

export class SimFleet implements FleetControl {
  readonly miners: SimMinerInfo[];
  private readonly byId = new Map<string, MinerRuntime>();
  private readonly byAuthority = new Map<string, MinerRuntime>();
  private readonly server = new grpc.Server({ 'grpc.enable_channelz': 0 });
  private readonly injector: ReturnType<grpc.Server['createConnectionInjector']>;
  private readonly sessions = new SessionTable();
  private readonly records: MutationRecord[] = [];
  private readonly abort = new AbortController();
  private readonly random: () => number;
  private readonly sessionTtlMs: number;
  private readonly rebootDownMs: number;
  private closed = false;
  private readonly pingPolicy: PingPolicy | undefined;
  /** Keepalive pings seen, strikes and GOAWAYs sent (when a ping policy is enforced). */
  readonly pingStats: PingStats = { pings: 0, strikes: 0, goaways: 0 };

  private constructor(opts: SimFleetOptions) {
    this.sessionTtlMs = opts.sessionTtlMs ?? 3_600_000;
    this.rebootDownMs = opts.rebootDownMs ?? 3_000;
    this.pingPolicy = opts.pingPolicy;
    setMaxListeners(0, this.abort.signal); // one listener per in-flight slow call
    this.random = seededRandom((opts.seed ?? 1) * 31 + 7);
    for (const key of SERVICE_KEYS) this.server.addService(wrapServiceDefinition(serviceDefinition(key)), this.handlersFor(key));
    const creds = opts.tls
      ? grpc.ServerCredentials.createSsl(
          opts.tls.clientCaPem ?? null,
          [{ private_key: opts.tls.keyPem, cert_chain: opts.tls.certPem }],
          opts.tls.clientCaPem !== undefined,
        )
      : grpc.ServerCredentials.createInsecure();
    this.injector = this.server.createConnectionInjector(creds);
    const now = Date.now();
    for (const spec of opts.miners) {
      const rt: MinerRuntime = {
        state: createMinerState({ id: spec.id, index: spec.index, host: spec.host, port: spec.port, faults: spec.faults, seed: opts.seed ?? 1, nowMs: now }),
        endpoint: createEndpoint(spec.host, spec.port),
        callsSeen: 0,
        callCounts: {},
        statusListeners: new Set(),
      };
      this.byId.set(spec.id, rt);
      this.byAuthority.set(`${spec.host}:${spec.port}`, rt);
    }
    this.miners = opts.miners.map(({ id, host, port }) => ({ id, host, port }));
  }

  static async start(opts: SimFleetOptions): Promise<SimFleet> {
    const fleet = new SimFleet(opts);
    const all = [...fleet.byId.values()];
    try {
      for (let i = 0; i < all.length; i += 500) {
        await Promise.all(all.slice(i, i + 500).map((rt) => fleet.reconcile(rt)));
      }
    } catch (err) {
      // The miners already listening go too: a fleet that did not start holds no address.
      await fleet.close().catch(() => undefined);
      throw listenProblem(err);
    }
    for (const rt of all) fleet.armRebootLoop(rt);
    return fleet;
  }

  private reconcile(rt: MinerRuntime): Promise<void> {
    if (this.closed) return Promise.resolve();
    const policy = this.pingPolicy;
    return reconcileListener(rt.endpoint, () => rt.state.faults, (s) =>
      this.injector.injectConnection(policy ? policedConnection(s, policy, this.pingStats) : s),
    );
  }

  private runtime(minerId: string): MinerRuntime {
    const rt = this.byId.get(minerId);
    if (!rt) throw new Error(`sim: no miner "${minerId}"`);
    return rt;
  }

  // ---- control surface --------------------------------------------------------------------

  async state(minerId: string): Promise<SimMinerState> {
    return structuredClone(this.runtime(minerId).state);
  }

  async setFaults(minerId: string, faults: MinerFaults): Promise<void> {
    const rt = this.runtime(minerId);
    const before = rt.state.faults;
    rt.state.faults = faults;
    rt.state.password = faults.badAuth ? 'a-different-password' : SIM_PASSWORD;
    rt.state.apiVersion = faults.oldApi ? API_OLD : API_LATEST;
    rt.callsSeen = 0;
    if (Boolean(before.blackhole) !== Boolean(faults.blackhole) || Boolean(before.garbage) !== Boolean(faults.garbage)) {
      dropSockets(rt.endpoint);
    }
    clearTimeout(rt.rebootTimer);
    this.armRebootLoop(rt);
    await this.reconcile(rt);
  }

  async mutations(minerId?: string): Promise<MutationRecord[]> {
    return this.records.filter((r) => minerId === undefined || r.minerId === minerId);
  }

  async callCounts(minerId: string): Promise<Record<string, number>> {
    return { ...this.runtime(minerId).callCounts };
  }

  async expireSessions(minerId?: string): Promise<void> {
    this.sessions.expire(minerId);
  }

  async replaceMachine(minerId: string, macAddress: string): Promise<void> {
    const state = this.runtime(minerId).state;
    state.macAddress = macAddress;
    state.serialNumber = `SN-${macAddress.replace(/:/g, '').toUpperCase()}`;
    state.hostname = `other-${state.hostname}`;
  }

  async dropConnections(minerId: string): Promise<void> {
    dropSockets(this.runtime(minerId).endpoint);
  }

  async floodStatus(minerId: string, count: number, padBytes = 0): Promise<void> {
    const rt = this.runtime(minerId);
    for (let i = 0; i < count; i++) for (const send of rt.statusListeners) send(padBytes);
  }

  async reboot(minerId: string, downMs: number): Promise<void> {
    const rt = this.runtime(minerId);
    rt.endpoint.down = true;
    this.sessions.expire(minerId);
    await this.reconcile(rt);
    const timer = setTimeout(() => {
      rt.endpoint.down = false;
      const now = Date.now();
      rt.state.bootedAtMs = now;
      rt.state.miningSinceMs = now;
      rt.state.status = 'MINER_STATUS_NORMAL';
      void this.reconcile(rt);
    }, downMs);
    this.abort.signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    for (const rt of this.byId.values()) {
      clearTimeout(rt.rebootTimer);
      rt.state.faults = { refuse: true };
    }
    await Promise.all([...this.byId.values()].map((rt) => reconcileListener(rt.endpoint, () => ({ refuse: true }), () => undefined)));
    this.injector.destroy();
    this.server.forceShutdown();
  }

  private armRebootLoop(rt: MinerRuntime): void {
    const loop = rt.state.faults.rebootLoop;
    if (!loop || this.closed) return;
    rt.rebootTimer = setTimeout(() => {
      void this.reboot(rt.state.id, loop.downMs).then(() => {
        rt.rebootTimer = setTimeout(() => this.armRebootLoop(rt), loop.downMs);
      });
    }, loop.upMs);
  }

  // ---- request handling -------------------------------------------------------------------

  /** Applies faults, auth and version rules, then the method's semantics. */
  private async dispatch(method: string, authority: string, metadata: grpc.Metadata, request: Record<string, unknown>): Promise<Reply | 'hang'> {
    const rt = this.byAuthority.get(authority);
    if (!rt) throw new SimStatusError(grpc.status.UNAVAILABLE, `no simulated miner at ${authority}`);
    const m = rt.state;
    const spec = METHODS[method];
    if (!spec) throw new SimStatusError(grpc.status.UNIMPLEMENTED, `unknown method ${method}`);
    rt.callCounts[method] = (rt.callCounts[method] ?? 0) + 1;
    rt.callsSeen++;
    const f = m.faults;
    if (f.hang) return 'hang';
    if (f.slow) await sleep(f.slow.latencyMs, undefined, { signal: this.abort.signal });
    if (f.overloaded) throw new SimStatusError(grpc.status.RESOURCE_EXHAUSTED, 'too many concurrent requests');
    if (f.flaky) {
      const failing = f.flaky.failFirst !== undefined ? rt.callsSeen <= f.flaky.failFirst : this.random() < (f.flaky.rate ?? 0);
      if (failing) throw new SimStatusError(grpc.status.UNAVAILABLE, 'bosminer is restarting');
    }
    const now = Date.now();
    if (spec.since && !supportsApi(m, spec.since[0], spec.since[1])) {
      throw new SimStatusError(grpc.status.UNIMPLEMENTED, `${method} is not implemented by API ${m.apiVersion.major}.${m.apiVersion.minor}.${m.apiVersion.patch}`);
    }
    if (method === 'Login') return loginReply(this.sessions, m, request, now, this.sessionTtlMs);
    if (spec.auth) {
      const token = metadata.get('authorization')[0];
      const ttl = f.tokenExpiry?.ttlMs ?? this.sessionTtlMs;
      if (!this.sessions.touch(typeof token === 'string' ? token : undefined, m.id, ttl, now)) {
        throw new SimStatusError(grpc.status.UNAUTHENTICATED, 'missing or expired authorization token');
      }
    }
    if (spec.mutation && f.dropWrites) return 'hang';
    let body: Record<string | symbol, unknown>;
    try {
      const statusBefore = m.status;
      body = spec.impl(m, request, now);
      if (spec.mutation) this.records.push({ minerId: m.id, method, request, atMs: now, result: 'applied' });
      if (m.status !== statusBefore) for (const l of rt.statusListeners) l();
    } catch (err) {
      if (spec.mutation) this.records.push({ minerId: m.id, method, request, atMs: now, result: 'rejected' });
      throw err;
    }
    if (method === 'Reboot') setTimeout(() => void this.reboot(m.id, this.rebootDownMs), 20).unref();
    if (spec.mutation && f.lostReply) return 'hang'; // applied, but the answer never comes
    if (f.malformed && method !== 'GetApiVersion') body[RAW_REPLY] = MALFORMED_BYTES;
    if (f.oversized && method !== 'GetApiVersion') body[PAD_REPLY] = f.oversized.bytes;
    return { body };
  }

  private handlersFor(key: ServiceKey): grpc.UntypedServiceImplementation {
    const handlers: grpc.UntypedServiceImplementation = {};
    for (const [name, spec] of Object.entries(METHODS)) {
      if (spec.service !== key) continue;
      handlers[name] = name === 'GetMinerStatus' ? this.statusStreamHandler() : this.unaryHandler(name);
    }
    return handlers;
  }

  private unaryHandler(method: string): grpc.handleUnaryCall<Record<string, unknown>, unknown> {
    return (call, callback) => {
      this.dispatch(method, call.getHost(), call.metadata, call.request).then(
        (reply) => {
          if (reply === 'hang') return;
          if (reply.header) call.sendMetadata(reply.header);
          callback(null, reply.body);
        },
        (err: unknown) => callback(toServiceError(err)),
      );
    };
  }

  private statusStreamHandler(): grpc.handleServerStreamingCall<Record<string, unknown>, unknown> {
    return (call) => {
      this.dispatch('GetMinerStatus', call.getHost(), call.metadata, call.request).then(
        (reply) => {
          if (reply === 'hang') return;
          const rt = this.byAuthority.get(call.getHost());
          if (!rt) return;
          let sent = 0;
          const send = (padBytes = 0) => {
            if (call.cancelled || call.destroyed) return;
            call.write(padBytes ? { status: rt.state.status, [PAD_REPLY]: padBytes } : { status: rt.state.status });
            sent++;
            const drop = rt.state.faults.dropStream;
            if (drop && sent >= drop.afterMessages) setTimeout(() => dropSockets(rt.endpoint), 50).unref();
          };
          rt.statusListeners.add(send);
          call.on('cancelled', () => rt.statusListeners.delete(send));
          call.on('close', () => rt.statusListeners.delete(send));
          send();
        },
        (err: unknown) => call.emit('error', toServiceError(err)),
      );
    };
  }
}

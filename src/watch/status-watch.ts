// Live status of a set of miners (`bos-fleet watch`): one GetMinerStatus stream per miner, kept up
// through dropped connections and outages (a reboot, a switch restarted), reporting each change.
// Nothing here touches Redis: a watch reads, it changes nothing and leaves no record.
import { setMaxListeners } from 'node:events';
import { FleetError, minerStatusStream, type FleetCore, type MinerClient, type MinerTarget } from '../core/index.js';

interface EventBase {
  minerId: string;
  /** Epoch ms. */
  at: number;
}

export type WatchEvent =
  /** The miner's first status, a change, or its status once it is back after a `lost`. */
  | (EventBase & { kind: 'status'; status: string; previous?: string; downMs?: number })
  /** The stream dropped or could not subscribe: the watch keeps trying (said once per outage). */
  | (EventBase & { kind: 'lost'; error: FleetError; previous?: string })
  /** An error retrying cannot fix (a refused password, a TLS mismatch): this miner is no longer watched. */
  | (EventBase & { kind: 'stopped'; error: FleetError });

export interface WatchOptions {
  signal: AbortSignal;
  onEvent: (event: WatchEvent) => void;
  /**
   * Pause before subscribing again after a retryable error the stream does not retry itself (its
   * miner's breaker open, say); default: the core's longest reconnect delay.
   */
  retryDelayMs?: number;
  /** How often a stream that is up checks its connection with a call (default 10 s). */
  heartbeatMs?: number;
  /**
   * Checked before each subscription's first status is reported (the inventory's MAC, say): one that
   * throws an error retrying cannot fix stops the miner's watch with it.
   */
  verify?: (miner: MinerClient) => Promise<void>;
}

const DEFAULT_HEARTBEAT_MS = 10_000;

/** `MINER_STATUS_PAUSED` → `PAUSED`, as in a poll's `minerStatus`. */
export const statusName = (status: string): string => status.replace(/^MINER_STATUS_/, '');

/** Watches every target until `signal` aborts or every one has stopped (`stopped` events). */
export async function watchStatuses(core: FleetCore, targets: readonly MinerTarget[], opts: WatchOptions): Promise<void> {
  // Each miner's stream and backoff listen on the one signal: thousands of listeners, all expected.
  setMaxListeners(0, opts.signal);
  await Promise.all(targets.map((t) => watchOne(core, t, opts)));
}

/**
 * Codes of a heartbeat that say the connection under a stream is dead. Any answer at all (even an
 * error status) says the miner is there; an open breaker is only the memory of earlier failures.
 */
const DEAD = new Set(['MINER_UNREACHABLE', 'MINER_TIMEOUT', 'CONNECTION_LOST']);

async function watchOne(core: FleetCore, target: MinerTarget, opts: WatchOptions): Promise<void> {
  const { signal, onEvent } = opts;
  const retryDelayMs = opts.retryDelayMs ?? core.options.stream.reconnectMaxDelayMs;
  const heartbeatMs = opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  const miner = core.miner(target);
  const now = () => core.clock.now();
  let last: string | undefined;
  let lostAt: number | undefined;
  const lose = (error: FleetError) => {
    if (lostAt !== undefined) return;
    lostAt = now();
    onEvent({ kind: 'lost', minerId: target.id, at: lostAt, error, ...(last !== undefined ? { previous: last } : {}) });
  };
  while (!signal.aborted) {
    // One subscription; the heartbeat ends it when the connection under it is found dead.
    const subscription = new AbortController();
    const both = AbortSignal.any([signal, subscription.signal]);
    const beating = heartbeat(core, miner, heartbeatMs, both, () => lostAt === undefined && last !== undefined, (error) => {
      lose(error);
      subscription.abort();
    });
    let verified = 0; // the subscription whose machine was checked
    try {
      // Never gives up on its own: a miner down for an hour is watched until it is back.
      for await (const update of minerStatusStream(core, miner, { signal: both, maxReconnects: Infinity, onReconnect: ({ error }) => lose(error) })) {
        if (opts.verify && update.subscription !== verified) {
          // Each new subscription may reach another machine (a reboot can bring a new DHCP lease).
          await opts.verify(miner);
          verified = update.subscription;
        }
        const status = statusName(update.status);
        if (status === last && lostAt === undefined) continue; // a resubscription repeats the status
        const at = now();
        onEvent({ kind: 'status', minerId: target.id, at, status, ...(last !== undefined && last !== status ? { previous: last } : {}), ...(lostAt !== undefined ? { downMs: at - lostAt } : {}) });
        last = status;
        lostAt = undefined;
      }
      // Aborted: the watch is over, or the heartbeat found the connection dead (subscribe again).
    } catch (raw) {
      if (signal.aborted) return;
      const error = FleetError.from(raw, { minerId: target.id, host: target.host, port: target.port, operation: 'GetMinerStatus' });
      if (!error.retryable) {
        onEvent({ kind: 'stopped', minerId: target.id, at: now(), error });
        return;
      }
      lose(error);
      try {
        await core.clock.sleep(retryDelayMs, signal);
      } catch {
        return;
      }
    } finally {
      subscription.abort();
      await beating;
    }
  }
}

/**
 * A stream that receives nothing may be a quiet miner or a dead connection (power lost, cable
 * pulled: nothing resets it, and HTTP/2 keepalive may not ping more often than every 5 minutes).
 * While the stream is up, a GetApiVersion every `everyMs` on the same connection tells them apart.
 */
async function heartbeat(core: FleetCore, miner: MinerClient, everyMs: number, signal: AbortSignal, up: () => boolean, dead: (error: FleetError) => void): Promise<void> {
  for (;;) {
    try {
      await core.clock.sleep(everyMs, signal);
    } catch {
      return;
    }
    if (!up()) continue;
    try {
      await miner.call('GetApiVersion', {}, { signal });
    } catch (raw) {
      if (signal.aborted) return;
      const error = FleetError.from(raw);
      if (DEAD.has(error.code)) return dead(error);
    }
  }
}

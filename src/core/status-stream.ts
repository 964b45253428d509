// GetMinerStatus as an AsyncIterable tied to an AbortSignal: reconnects with backoff after the
// connection drops, resubscribes, applies backpressure (grpc-js reads only as the consumer pulls),
// and releases the call on abort, return() or error.
import * as grpc from '@grpc/grpc-js';
import { backoffDelayMs } from './backoff.js';
import { FleetError } from './fleet-error.js';
import { methodDefinition } from './methods.js';
import type { MinerClient } from './miner-client.js';
import type { MinerChannel } from './channel.js';
import type { FleetCore } from './fleet-core.js';

export interface StatusUpdate {
  status: string;
  /** Increments each time the stream had to be re-established. */
  subscription: number;
}

export interface StatusStreamOptions {
  signal?: AbortSignal;
  /** Reconnects allowed in a row without a message in between (default from core options; Infinity: never give up). */
  maxReconnects?: number;
  /** Told each time the stream dropped (or could not subscribe) and is about to try again after `delayMs`. */
  onReconnect?: (info: { error: FleetError; attempt: number; delayMs: number }) => void;
}

const RECONNECTABLE = new Set(['MINER_UNREACHABLE', 'CONNECTION_LOST', 'MINER_TIMEOUT', 'MINER_OVERLOADED']);

export async function* minerStatusStream(core: FleetCore, miner: MinerClient, opts: StatusStreamOptions = {}): AsyncGenerator<StatusUpdate> {
  const o = core.options.stream;
  const maxReconnects = opts.maxReconnects ?? o.maxReconnects;
  const def = methodDefinition('GetMinerStatus');
  let failuresInRow = 0;
  let subscription = 0;
  for (;;) {
    if (opts.signal?.aborted) return;
    let call: grpc.ClientReadableStream<unknown> | undefined;
    let token: string | undefined;
    let subscribedAtMs: number | undefined;
    let channel: MinerChannel | undefined;
    try {
      token = await miner.token(opts.signal ? { signal: opts.signal } : {});
      channel = miner.channel();
      if ((await channel.waitReady(core.options.connectTimeoutMs)) === 'timeout') {
        throw new FleetError('MINER_TIMEOUT', `no connection within ${core.options.connectTimeoutMs} ms`, { mayHaveReachedMiner: false });
      }
      const md = new grpc.Metadata();
      md.set('authorization', token);
      call = (channel.client as grpc.Client).makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, {}, md, {});
      const onAbort = () => call?.cancel();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      subscription++;
      subscribedAtMs = core.clock.now();
      // A miner answers a subscription with its status at once: one that says nothing within a
      // read deadline is frozen (it accepted the call and hangs), and the subscription is tried
      // again like a dropped one — else a miner that recovers would never be heard from.
      const firstMessage = new AbortController();
      let silent = false;
      const current = call;
      core.clock.sleep(core.options.readTimeoutMs, firstMessage.signal).then(
        () => {
          silent = true;
          current.cancel();
        },
        () => undefined,
      );
      try {
        for await (const msg of call as AsyncIterable<{ status: string }>) {
          firstMessage.abort();
          yield { status: msg.status, subscription };
        }
      } catch (err) {
        if (silent && !opts.signal?.aborted) throw new FleetError('MINER_TIMEOUT', `no status within ${core.options.readTimeoutMs} ms of subscribing`, { mayHaveReachedMiner: true });
        throw err;
      } finally {
        firstMessage.abort();
        opts.signal?.removeEventListener('abort', onAbort);
      }
      // The server ended the stream cleanly: resubscribe like after a drop.
      throw new FleetError('CONNECTION_LOST', 'status stream ended by the miner');
    } catch (raw) {
      call?.cancel();
      // Not held through the backoff below.
      if (channel) miner.releaseChannel(channel);
      channel = undefined;
      if (opts.signal?.aborted) return;
      const err = FleetError.from(raw, { minerId: miner.target.id, host: miner.target.host, operation: 'GetMinerStatus' });
      // A refused token (expired session) is dropped and the next subscription logs in again; a
      // refused login (a wrong password) is final: trying again only locks the account out sooner.
      if (err.code === 'MINER_AUTH_FAILED') {
        if (!token) throw err.with({ attempts: failuresInRow + 1 });
        miner.invalidateToken(token);
      }
      if (!RECONNECTABLE.has(err.code) && err.code !== 'MINER_AUTH_FAILED') throw err;
      // A subscription that stayed up long enough was healthy: the count of drops in a row restarts.
      if (subscribedAtMs !== undefined && core.clock.now() - subscribedAtMs >= o.stableAfterMs) failuresInRow = 0;
      failuresInRow++;
      if (failuresInRow > maxReconnects) throw err.with({ attempts: failuresInRow });
      const delay = backoffDelayMs(failuresInRow, { baseDelayMs: o.reconnectBaseDelayMs, maxDelayMs: o.reconnectMaxDelayMs, random: core.random });
      opts.onReconnect?.({ error: err, attempt: failuresInRow, delayMs: delay });
      try {
        await core.clock.sleep(delay, opts.signal);
      } catch {
        return;
      }
    } finally {
      call?.cancel();
      if (channel) miner.releaseChannel(channel);
    }
  }
}

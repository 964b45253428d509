// A Redis failover moves the primary's name (a DNS name, a managed service's endpoint) to another
// node and makes the old one a replica, but the connections already open stay on the old node: every
// write is refused READONLY, and a worker waited on it for ever ("point --redis at the primary",
// while it was). Such a connection reconnects instead — by its name, so it reaches the new primary —
// and each command refused meanwhile is sent again (a command refused READONLY did nothing).
import type { RedisOptions } from 'ioredis';

/** READONLY refusals this soon after a connection's reconnect are of the same failover: sent again. */
export const FAILOVER_EPISODE_MS = 2_000;
/**
 * Reconnects on READONLY per connection per minute, at most: a Redis that stays a replica (given as
 * --redis by mistake, or a name not moved yet) gets its refusals through, to be said and waited out
 * (refusal-brake.ts), not a reconnect loop.
 */
export const FAILOVER_RECONNECTS_PER_MINUTE = 5;

/** ioredis options of a connection that follows its Redis's name to the new primary after a failover (one per connection). */
export function followFailover(): Pick<RedisOptions, 'reconnectOnError'> {
  let episodeAt = -Infinity;
  const recent: number[] = [];
  return {
    reconnectOnError: (err: Error) => {
      if (!/^READONLY\b/.test(err.message)) return false;
      const now = Date.now();
      // ioredis reconnects once however many commands ask (it does not while reconnecting) and sends each again.
      if (now - episodeAt <= FAILOVER_EPISODE_MS) return 2;
      while (recent.length > 0 && now - recent[0]! > 60_000) recent.shift();
      if (recent.length >= FAILOVER_RECONNECTS_PER_MINUTE) return false;
      episodeAt = now;
      recent.push(now);
      return 2;
    },
  };
}

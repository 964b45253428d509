// A Redis that keeps its connections open but stops answering (its process stopped or swapping, a
// long script or save, a network path that drops packets without closing anything): ioredis sees no
// error and every command waits, so nothing would ever be said. A probe notices it and says so.
import type { Redis } from 'ioredis';

/** How long Redis may leave a command unanswered before it counts as stalled: BOS_FLEET_REDIS_STALL_S, default 15. */
export function stallAfterMs(env: NodeJS.ProcessEnv = process.env): number {
  const text = env['BOS_FLEET_REDIS_STALL_S'];
  if (text === undefined || text === '') return 15_000;
  const s = Number(text);
  if (!Number.isFinite(s) || s <= 0) throw new Error(`BOS_FLEET_REDIS_STALL_S must be a number of seconds above 0, got "${text}"`);
  return Math.round(s * 1000);
}

export interface StallWatch {
  /** Connected, but a probe has waited longer than the limit for its answer. */
  stalled(): boolean;
  /** How long the probe in flight has waited on a connected Redis (0: none waiting, or disconnected). */
  unansweredMs(): number;
  stop(): void;
}

/** The watches whose stall has been said and not yet its end: one line per stall for the whole process. */
const saying = new Set<object>();

/**
 * Probes `redis` (a PING at most every `probeEveryMs`, none while one is unanswered) and says once
 * when a probe has waited `afterMs` on a connected Redis, and once when it is answered. A Redis that
 * is disconnected is not stalled: ioredis reports that itself, and resends the probe on reconnect.
 * `whileStalled` says what happens meanwhile. Its timer keeps no process alive.
 */
export function watchStalls(
  redis: Redis,
  who: string,
  whileStalled: string,
  o: { afterMs?: number; probeEveryMs?: number; write?: (line: string) => void; now?: () => number } = {},
): StallWatch {
  const afterMs = o.afterMs ?? stallAfterMs();
  const now = o.now ?? Date.now;
  const write = o.write ?? ((line: string) => console.error(line));
  const self = {};
  let sentAt: number | undefined;
  const waited = () => (sentAt === undefined || redis.status !== 'ready' ? 0 : now() - sentAt);
  const probe = () => {
    if (sentAt !== undefined) {
      if (waited() > afterMs && saying.size === 0) {
        saying.add(self);
        write(`${who}: WARNING: Redis has not answered for ${Math.round(waited() / 1000)} s, though connected: it is frozen, busy (a long script or save), or cut off from this host without the connection closing; ${whileStalled}`);
      }
      return;
    }
    if (redis.status !== 'ready') return;
    const at = (sentAt = now());
    redis.ping().then(
      () => {
        sentAt = undefined;
        if (saying.delete(self)) write(`${who}: Redis answers again (after ${Math.max(1, Math.round((now() - at) / 1000))} s without an answer)`);
      },
      () => void (sentAt = undefined), // the connection ended: nothing to watch
    );
  };
  // A probe left unanswered when the connection dropped is sent again on the reconnect (ioredis
  // resends what had no reply): it waits from then, not from before the outage.
  const reconnected = () => {
    if (sentAt !== undefined) sentAt = now();
  };
  redis.on('ready', reconnected);
  const timer = setInterval(probe, o.probeEveryMs ?? Math.min(2_000, afterMs / 4));
  timer.unref();
  return {
    stalled: () => waited() > afterMs,
    unansweredMs: waited,
    stop: () => {
      clearInterval(timer);
      redis.off('ready', reconnected);
      saying.delete(self);
    },
  };
}

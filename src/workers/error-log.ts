// Errors a worker cannot act on (Redis refusing writes, say) arrive once per job: thousands a minute.
// Each kind is printed once, then at most every `everyMs` with how many were held back meanwhile.
import { isConnectionDrop } from '../redis/connection-drop.js';

export interface ErrorLog {
  (message: string): void;
}

/** The part of a message that says what went wrong (script hashes and line numbers vary per call). */
export function errorKind(message: string): string {
  return message.replace(/\s*script: [0-9a-f]{40}, on @user_script:\d+\.?/g, '').trim();
}

/**
 * Messages alike but for the job they name (BullMQ's "could not renew lock for job ID", "Missing lock
 * for job ID. moveToFinished": after a Redis stall, one per job in flight) are one kind.
 */
export function sameKind(message: string): string {
  return errorKind(message).replace(/\bjob \S+?(?=\.?(?:\s|$))/g, 'job …');
}

/**
 * `kindOf` says which messages are alike (default: the same error kind, whichever job it names); the
 * line printed is the message itself, without script hashes.
 */
export function rateLimitedLog(write: (line: string) => void, everyMs = 10_000, now: () => number = Date.now, kindOf: (message: string) => string = sameKind): ErrorLog {
  const seen = new Map<string, { atMs: number; held: number }>();
  return (message: string) => {
    const kind = kindOf(message);
    const text = errorKind(message);
    const t = now();
    const s = seen.get(kind);
    if (s && t - s.atMs < everyMs) {
      s.held++;
      return;
    }
    const held = s?.held ?? 0;
    seen.set(kind, { atMs: t, held: 0 });
    if (seen.size > 100) seen.delete(seen.keys().next().value as string); // bounded: oldest kind first
    write(held > 0 ? `${text} (${held} more like it in the last ${Math.round((t - s!.atMs) / 1000)} s)` : text);
  };
}

/** BullMQ's error for a job ended, or moved, without its lock ("Missing lock for job ID. moveToFinished"). */
export function isMissingLock(message: string): boolean {
  return /^Missing lock for job /.test(message);
}

/**
 * The line a BullMQ worker's 'error' event is logged with, or undefined for a dropped connection
 * (ECONNREFUSED, EPIPE, …): reportRedisOutages says those once, in words, for all of a worker's
 * connections. A lock lost after a Redis stall (one per job in flight) is said with what it means.
 */
export function workerErrorText(err: Error): string | undefined {
  if (isConnectionDrop(err)) return undefined;
  const ranOut = 'its lock may have run out while Redis, or this worker, did not answer — a stall, a freeze, a suspend: then the job runs again, and its outcome is still written once';
  if (/^could not renew lock for job /.test(err.message)) return `${err.message} (${ranOut})`;
  // Also what a command sent again after a dropped connection meets when its first send had run.
  if (isMissingLock(err.message)) return `${err.message} (${ranOut}; or the connection dropped after Redis had run the command, and ioredis sent it again: the job had already moved on)`;
  return err.message;
}

/**
 * Watches Redis connections that reconnect by themselves (ioredis): says Redis is unreachable at most
 * once every `everyMs`, not once per reconnect attempt, and once it is back, how long it was gone —
 * once for all the connections watched.
 */
export function reportRedisOutages(who: string, whileDown: string, connections: Array<{ on(event: 'error', f: (err: Error) => void): unknown; on(event: 'ready', f: () => void): unknown }>, everyMs = 10_000, now: () => number = Date.now, write: (line: string) => void = (line) => console.error(line)): void {
  let lastMs = -Infinity;
  let downSinceMs: number | null = null;
  const onError = (err: Error) => {
    const t = now();
    downSinceMs ??= t;
    if (t - lastMs < everyMs) return;
    lastMs = t;
    // Reachable, but its password changed (or was set) since this process started: it reads --redis once.
    const auth = /^(NOAUTH|WRONGPASS)/.test(err.message);
    write(
      auth
        ? `${who}: Redis refuses this process's login (${err.message}): its password was set or changed since this process started, which reads --redis / REDIS_URL once: restart it with the new one (redis://:PASSWORD@host:port); retrying meanwhile — ${whileDown}`
        : `${who}: Redis unreachable (${err.message}); retrying — ${whileDown}`,
    );
  };
  const onReady = () => {
    if (downSinceMs === null) return;
    write(`${who}: Redis reachable again (unreachable for ${Math.max(1, Math.round((now() - downSinceMs) / 1000))} s)`);
    downSinceMs = null;
    lastMs = -Infinity;
  };
  for (const c of connections) {
    c.on('error', onError);
    c.on('ready', onReady);
  }
}

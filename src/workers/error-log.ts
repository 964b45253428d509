// Errors a worker cannot act on (Redis refusing writes, say) arrive once per job: thousands a minute.
// Each kind is printed once, then at most every `everyMs` with how many were held back meanwhile.

export interface ErrorLog {
  (message: string): void;
}

/** The part of a message that says what went wrong (script hashes and line numbers vary per call). */
export function errorKind(message: string): string {
  return message.replace(/\s*script: [0-9a-f]{40}, on @user_script:\d+\.?/g, '').trim();
}

/**
 * `kindOf` says which messages are alike (default: the same error kind); the line printed is the
 * message itself, without script hashes.
 */
export function rateLimitedLog(write: (line: string) => void, everyMs = 10_000, now: () => number = Date.now, kindOf: (message: string) => string = errorKind): ErrorLog {
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

/**
 * The error handler of a Redis connection that reconnects by itself (ioredis): it says Redis is
 * unreachable at most once every `everyMs`, not once per reconnect attempt.
 */
export function unreachableRedisLog(who: string, whileDown: string, everyMs = 10_000): (err: Error) => void {
  let lastMs = -Infinity;
  return (err) => {
    if (Date.now() - lastMs < everyMs) return;
    lastMs = Date.now();
    console.error(`${who}: Redis unreachable (${err.message}); retrying — ${whileDown}`);
  };
}

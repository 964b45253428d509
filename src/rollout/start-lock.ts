// One rollout start (or resume of a failed one) at a time per farm: the overlap check and the record
// it guards are two steps, and two starts between them (two operators, a tick and a hand start)
// would both pass the check and change one setting of the same miners side by side.
import { callToken } from '../fleet/ids-and-durations.js';
import type { Redis } from 'ioredis';

/** A holder that died lets go after this long; a start takes well under a second. */
const LOCK_TTL_MS = 30_000;
/** How long a start waits for another to finish before giving up, saying so. */
const WAIT_MS = 60_000;

// Deletes the lock KEYS[1] only if it still holds this holder's token ARGV[1] (it may have expired
// and been taken by another start since).
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

export const startLockKey = (prefix: string) => `${prefix}:rollout-start-lock`;

/** Runs `fn` holding the farm's rollout start lock. */
export async function withStartLock<T>(redis: Redis, prefix: string, fn: () => Promise<T>, waitMs = WAIT_MS): Promise<T> {
  const key = startLockKey(prefix);
  const token = callToken();
  const deadline = Date.now() + waitMs;
  // Held already by this token: the SET took it, its reply lost with the connection, and ioredis's
  // resend on the new one found it taken (without the look, the start waited out the lock's 30 s).
  while ((await redis.set(key, token, 'PX', LOCK_TTL_MS, 'NX')) !== 'OK' && (await redis.get(key)) !== token) {
    if (Date.now() >= deadline) {
      throw new Error(`rollout starts kept the start lock (${key}) busy for ${Math.round(waitMs / 1000)} s: try again`);
    }
    await new Promise((r) => setTimeout(r, 20 + Math.floor(Math.random() * 30)));
  }
  try {
    return await fn();
  } finally {
    await redis.eval(RELEASE, 1, key, token);
  }
}

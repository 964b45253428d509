// --max-in-flight-per-site: a lease-based semaphore per rollout and site. The lease is renewed while
// its job runs (a reboot may take minutes), so a dead worker's slot frees itself after one lease
// instead of never, and a live one's long change never lets another miner of the site in beside it.
//
// A job refused a slot is parked: its id listed under the site, and the job delayed for long
// (PARKED_MS). A job that frees a slot wakes the next parked one of its site, and the rollout's gate
// check (every 300 ms while a wave runs) wakes parked jobs wherever slots are free. A wakeup is
// recorded (`:waking`) from the moment its id leaves the list until its job is back in the queue, so
// one cut short (its worker killed or stopped between the two, or the job not delayed yet) is made
// again by the gate check a few seconds later: it costs a moment, not PARKED_MS. Thousands of miners
// throttled to a few per site so wait in Redis without being fetched, refused and delayed again 2-4
// times a second each.
import type { Job, Queue } from 'bullmq';
import { handOnQueues } from '../fleet/hand-on-queues.js';
import type { Redis } from 'ioredis';

/** How long a parked job waits if nothing wakes it (its slot's holder and the gate check both died). */
export const PARKED_MS = 10 * 60_000;

// KEYS: slots (zset holder → lease expiry). ARGV: now, expiry, holder, limit, TTL. 1 = held.
const ACQUIRE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0`;

// KEYS: slots, parked (list of job ids), waking (zset id → when). ARGV: now, limit, TTL. Pops as many
// parked ids as slots are free, each recorded as being woken.
const WAKE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])
local ids = {}
while free > 0 do
  local id = redis.call('LPOP', KEYS[2])
  if not id then break end
  ids[#ids + 1] = id
  redis.call('ZADD', KEYS[3], ARGV[1], id)
  free = free - 1
end
if #ids > 0 then redis.call('PEXPIRE', KEYS[3], ARGV[3]) end
return ids`;

type WithSlotCommands = Redis & {
  bosFleetSiteAcquire(slots: string, ...args: (string | number)[]): Promise<number>;
  bosFleetSiteWake(slots: string, parked: string, waking: string, ...args: (string | number)[]): Promise<string[]>;
};

function commands(redis: Redis): WithSlotCommands {
  // EVALSHA after the first call instead of the scripts' text every time.
  if (!('bosFleetSiteAcquire' in redis)) {
    redis.defineCommand('bosFleetSiteAcquire', { numberOfKeys: 1, lua: ACQUIRE });
    redis.defineCommand('bosFleetSiteWake', { numberOfKeys: 3, lua: WAKE });
  }
  return redis as WithSlotCommands;
}

/** The key of the list of a site's parked job ids. */
const parkedKey = (slotKey: string) => `${slotKey}:parked`;
const wakingKey = (slotKey: string) => `${slotKey}:waking`;

/** A wakeup older than this that has not put its job back in the queue is made again by the gate check. */
export const WAKING_STALE_MS = 5_000;

export async function acquireSiteSlot(redis: Redis, key: string, holder: string, limit: number, leaseMs: number): Promise<boolean> {
  const now = Date.now();
  return (await commands(redis).bosFleetSiteAcquire(key, now, now + leaseMs, holder, limit, leaseMs * 2)) === 1;
}

/** A held slot: renewed every third of its lease until released. */
export interface SiteSlot {
  /** Frees the slot and wakes the next parked job of the site. */
  release(queue: Queue): Promise<void>;
  /**
   * Stops renewing it, and leaves it held: its job was given up for a lost lock (TakenOverError), and
   * the worker running the job again holds the slot under the same job id, or will, or its lease ends.
   */
  leave(): void;
}

export async function holdSiteSlot(redis: Redis, key: string, holder: string, limit: number, leaseMs: number): Promise<SiteSlot | undefined> {
  if (!(await acquireSiteSlot(redis, key, holder, limit, leaseMs))) return undefined;
  // Renewing is acquiring again as the same holder (the script then only moves its expiry). A renewal
  // Redis refuses is not retried: the lease runs out one lease after the last good one.
  const timer = setInterval(() => void acquireSiteSlot(redis, key, holder, limit, leaseMs).catch(() => undefined), Math.max(10, Math.floor(leaseMs / 3)));
  timer.unref();
  return {
    leave: () => clearInterval(timer),
    release: async (queue) => {
      clearInterval(timer);
      await redis.zrem(key, holder);
      // In the background: the job's outcome does not wait on it, and one it misses the gate check makes up.
      void wakeParked(redis, queue, key, limit).catch(() => undefined);
    },
  };
}

/**
 * Lists a job as waiting for a slot of its site; the caller then delays it for {@link PARKED_MS}. (A
 * wakeup that comes in between finds the job not delayed yet: the gate check makes it again.)
 */
export async function park(redis: Redis, key: string, jobId: string, sitesKey: string): Promise<void> {
  await redis.multi().rpush(parkedKey(key), jobId).pexpire(parkedKey(key), PARKED_MS * 3).sadd(sitesKey, key).pexpire(sitesKey, PARKED_MS * 3).exec();
}

/** Wakes as many parked jobs of the site as it has free slots. Returns how many were woken. */
export async function wakeParked(redis: Redis, queue: Queue, key: string, limit: number): Promise<number> {
  const moved = await promoteEach(queue, await commands(redis).bosFleetSiteWake(key, parkedKey(key), wakingKey(key), Date.now(), limit, PARKED_MS * 3));
  if (moved.length) await redis.zrem(wakingKey(key), ...moved);
  return moved.length;
}

/** Makes again the site's wakeups older than `staleMs` that did not put their job back in the queue (once). */
export async function rewakeStale(redis: Redis, queue: Queue, key: string, staleMs = WAKING_STALE_MS): Promise<number> {
  const ids = await redis.zrangebyscore(wakingKey(key), '-inf', Date.now() - staleMs);
  if (ids.length === 0) return 0;
  const moved = await promoteEach(queue, ids);
  await redis.zrem(wakingKey(key), ...ids);
  return moved.length;
}

/**
 * Moves these delayed jobs to their queue now (the run's queue, or the hand-on queue a worker passed
 * one to), 500 at a time. A job no longer delayed (taken by a worker since it was listed, woken twice,
 * or gone) is skipped. Returns how many were moved.
 */
export async function promoteJobs(queue: Queue, ids: readonly string[]): Promise<number> {
  return (await promoteEach(queue, ids)).length;
}

/** {@link promoteJobs}, returning the ids of the jobs it moved. */
async function promoteEach(queue: Queue, ids: readonly string[]): Promise<string[]> {
  let others: Promise<Queue[]> | undefined;
  const promoted = (job: Job | undefined) => (job ? job.promote().then(() => true, () => false) : false);
  const one = async (id: string) => {
    if (await promoted(await queue.getJob(id))) return true;
    for (const q of await (others ??= handOnQueues(queue))) if (await promoted(await q.getJob(id))) return true;
    return false;
  };
  const moved: string[] = [];
  for (let i = 0; i < ids.length; i += 500) {
    const batch = ids.slice(i, i + 500);
    const done = await Promise.all(batch.map((id) => one(id).catch(() => false)));
    moved.push(...batch.filter((_, j) => done[j]));
  }
  return moved;
}

// Jobs Redis gave a consumer in a reply the consumer never got. BullMQ moves a job to active (with a
// lock holding the consumer's token) in the same script that answers with it: its fetch, or the
// ending of the job before it (which also fetches the next). When the connection drops after Redis ran
// that script but before its reply arrived, ioredis sends the command again on the new connection, and
// the job it had fetched stays active under a lock that nobody renews: BullMQ takes it back only once
// the lock runs out and two stall checks pass (about a minute by default), so a poll's last miners
// wait that long after a Redis blip. Each consumer looks for such jobs after it reconnects, and after
// BullMQ says a job's lock was missing (the sign of a command run twice), and puts them back in the
// queue at once.
import { Job, type Worker } from 'bullmq';
import type { Redis } from 'ioredis';

/** Between the two looks at the active jobs (only a job lost at both goes back). */
export const LOST_FETCH_LOOK_GAP_MS = 1_000;

export interface LostFetches {
  /** Looks now (a look in progress looks once more when it ends). */
  look(): void;
  /** Jobs it holds as received and not ended (those delayed by the processor are dropped once there are many). */
  tracked(): number;
  stop(): void;
}

/** A job's lock, or none: read in batches, a long active list in one MGET each. */
async function locksOf(redis: Redis, w: Worker, ids: string[]): Promise<(string | null)[]> {
  const locks: (string | null)[] = [];
  for (let i = 0; i < ids.length; i += 1_000) locks.push(...(await redis.mget(ids.slice(i, i + 1_000).map((id) => `${w.toKey(id)}:lock`))));
  return locks;
}

/**
 * Watches consumer `w`, whose commands go over `conn`: jobs active under one of its tokens that it
 * never received are put back in the queue (`said` with how many). A job is lost only if two looks
 * {@link LOST_FETCH_LOOK_GAP_MS} apart find it so with the same lock, and it goes back only if that
 * lock still holds (BullMQ's own check): a job received in between, or taken back by a stall check
 * meanwhile, stays where it is.
 */
export function watchLostFetches(w: Worker, conn: Redis, said: (line: string) => void, gapMs = LOST_FETCH_LOOK_GAP_MS): LostFetches {
  // Jobs this consumer received and has not ended: with the order they were received in.
  const received = new Map<string, number>();
  let seq = 0;
  const ours = `${w.id}:`;
  let pruning = false;
  w.on('active', (job) => {
    received.set(String(job.id), ++seq);
    // A job the processor delays (DelayedError) ends without an event: those entries are dropped here.
    if (received.size > 2 * w.concurrency + 100 && !pruning) {
      pruning = true;
      void prune()
        .catch(() => undefined)
        .finally(() => (pruning = false));
    }
  });
  const ended = (job: Job | undefined) => void (job && received.delete(String(job.id)));
  w.on('completed', ended);
  w.on('failed', ended);
  let stopped = false;
  let running: Promise<void> | undefined;
  let again = false;
  let wait: NodeJS.Timeout | undefined;

  /** Drops the received jobs no longer under one of this consumer's locks (a read of their locks only). */
  const prune = async (): Promise<void> => {
    const before = seq;
    const ids = [...received.keys()];
    const locks = await locksOf(conn, w, ids);
    await new Promise((r) => setImmediate(r));
    ids.forEach((id, i) => {
      const at = received.get(id);
      if (at !== undefined && at <= before && !locks[i]?.startsWith(ours)) received.delete(id);
    });
  };

  /** Active jobs under one of this consumer's tokens that it has not received: id → lock. */
  const unreceived = async (): Promise<Map<string, string>> => {
    const before = seq;
    const ids = await conn.lrange(w.toKey('active'), 0, -1);
    const locks = await locksOf(conn, w, ids);
    // Replies read in the same turn as ours (a fetch's) are handed to the consumer first.
    await new Promise((r) => setImmediate(r));
    const active = new Set(ids);
    // Received before this look and no longer active: ended some other way (a delay, a lost lock).
    for (const [id, at] of received) if (at <= before && !active.has(id)) received.delete(id);
    const found = new Map<string, string>();
    ids.forEach((id, i) => {
      const lock = locks[i];
      if (lock?.startsWith(ours) && !received.has(id)) found.set(id, lock);
    });
    return found;
  };

  const sweep = async (): Promise<void> => {
    const first = await unreceived();
    if (first.size === 0 || stopped) return;
    await new Promise<void>((r) => (wait = setTimeout(r, gapMs)));
    if (stopped) return;
    const second = await unreceived();
    let back = 0;
    for (const [id, lock] of second) {
      if (first.get(id) !== lock || stopped) continue;
      const job = await Job.fromId(w, id);
      // Its lock changed hands, or the job ended, since the look: not lost, or no longer.
      if (job && (await job.moveToWait(lock).then(() => true, () => false))) back++;
    }
    if (back > 0) said(`${back} job${back === 1 ? '' : 's'} Redis gave this worker in a reply lost with the connection went back to the queue (they would have waited for their locks to run out and a stall check)`);
  };

  const look = (): void => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = sweep()
      .catch(() => undefined) // Redis gone again: the next reconnect looks again
      .finally(() => {
        running = undefined;
        if (again && !stopped) {
          again = false;
          look();
        }
      });
  };

  // Not the first connect: a reconnect, after which ioredis sent again what had no reply.
  let connected = conn.status === 'ready';
  const onReady = () => {
    if (connected) look();
    connected = true;
  };
  conn.on('ready', onReady);
  const onError = (err: Error) => {
    if (/^Missing lock for job /.test(err.message)) look();
  };
  w.on('error', onError);
  return {
    look,
    tracked: () => received.size,
    stop: () => {
      stopped = true;
      clearTimeout(wait);
      conn.off('ready', onReady);
      w.off('error', onError);
    },
  };
}

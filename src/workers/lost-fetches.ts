// Jobs Redis gave a consumer in a reply the consumer never got. BullMQ moves a job to active (with a
// lock holding the consumer's token) in the same script that answers with it: its fetch, or the
// ending of the job before it (which also fetches the next). When the connection drops after Redis ran
// that script but before its reply arrived, ioredis sends the command again on the new connection, and
// the job it had fetched stays active under a lock that nobody renews: BullMQ takes it back only once
// the lock runs out and two stall checks pass (about a minute by default), so a poll's last miners
// wait that long after a Redis blip. Each consumer looks for such jobs after it reconnects, and after
// BullMQ says a job's lock was missing (the sign of a command run twice), and puts them back in the
// queue at once. The consumers of one queue in a process share each look (one read of the queue's
// active jobs and their locks).
import { Job, type Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { isMissingLock } from './error-log.js';

/** Between the two looks at the active jobs (only a job lost at both goes back). */
export const LOST_FETCH_LOOK_GAP_MS = 1_000;

export interface LostFetches {
  /** Watches consumer `w`, whose commands go over `conn`, with this process's other consumers of its queue. */
  add(w: Worker, conn: Redis): void;
  /** Looks now at `queue`'s active jobs (a look in progress looks once more when it ends). */
  look(queue: string): void;
  /** Jobs `w` holds as received and not ended (those delayed by the processor are dropped once there are many). */
  tracked(w: Worker): number;
  stop(): void;
}

/** A job's lock, or none: read in batches, a long active list in one MGET each. */
async function locksOf(redis: Redis, w: Worker, ids: string[]): Promise<(string | null)[]> {
  const locks: (string | null)[] = [];
  for (let i = 0; i < ids.length; i += 1_000) locks.push(...(await redis.mget(ids.slice(i, i + 1_000).map((id) => `${w.toKey(id)}:lock`))));
  return locks;
}

interface Consumer {
  w: Worker;
  conn: Redis;
  /** The jobs it received and has not ended, with the order they were received in. */
  received: Map<string, number>;
  pruning: boolean;
  stop(): void;
}

interface QueueLooks {
  /** Its consumers by their tokens' prefix (`${worker id}:`). */
  consumers: Map<string, Consumer>;
  running?: Promise<void>;
  again: boolean;
}

/** Drops the jobs `c` received before a read (`before`, in order of receipt) that `held` says it no longer holds. */
function dropEnded(c: Consumer, before: number, held: (id: string) => boolean): void {
  for (const [id, at] of c.received) if (at <= before && !held(id)) c.received.delete(id);
}

/** Lets replies read in the same turn as a look's, on its connection (a fetch's), reach their consumer first. */
const afterTurn = () => new Promise((r) => setImmediate(r));

/** The consumer whose token `lock` is, if it is one of `consumers`. */
function holderOf(consumers: Map<string, Consumer>, lock: string | null): Consumer | undefined {
  return lock ? consumers.get(lock.slice(0, lock.lastIndexOf(':') + 1)) : undefined;
}

/**
 * Jobs active under one of a consumer's tokens that it never received are put back in the queue
 * (`said` with the queue and how many). A job is lost only if two looks {@link LOST_FETCH_LOOK_GAP_MS}
 * apart find it so with the same lock, and it goes back only if that lock still holds (BullMQ's own
 * check): a job received in between, or taken back by a stall check meanwhile, stays where it is.
 */
export function watchLostFetches(said: (queue: string, line: string) => void, gapMs = LOST_FETCH_LOOK_GAP_MS): LostFetches {
  const queues = new Map<string, QueueLooks>();
  // Order of receipt, across consumers: a look drops only what was received before it read.
  let seq = 0;
  let stopped = false;
  const waits = new Set<NodeJS.Timeout>();

  /** Drops the jobs `c` holds as received that are no longer under one of its locks (a read of their locks only). */
  const prune = async (c: Consumer, ours: string): Promise<void> => {
    const before = seq;
    const ids = [...c.received.keys()];
    const locks = await locksOf(c.conn, c.w, ids);
    await afterTurn();
    const lockOf = new Map(ids.map((id, i) => [id, locks[i]]));
    dropEnded(c, before, (id) => lockOf.get(id)?.startsWith(ours) === true);
  };

  /** Active jobs under one of the consumers' tokens that the consumer has not received: id → lock. */
  const unreceived = async (q: QueueLooks): Promise<Map<string, string>> => {
    const some = q.consumers.values().next().value;
    if (!some) return new Map();
    const before = seq;
    const ids = await some.conn.lrange(some.w.toKey('active'), 0, -1);
    const locks = await locksOf(some.conn, some.w, ids);
    // A fetch answered on another consumer's connection is seen by the second look.
    await afterTurn();
    const active = new Set(ids);
    // Received before this look and no longer active: ended some other way (a delay, a lost lock).
    for (const c of q.consumers.values()) dropEnded(c, before, (id) => active.has(id));
    const found = new Map<string, string>();
    ids.forEach((id, i) => {
      const lock = locks[i] ?? null;
      const holder = holderOf(q.consumers, lock);
      if (lock && holder && !holder.received.has(id)) found.set(id, lock);
    });
    return found;
  };

  const sweep = async (name: string, q: QueueLooks): Promise<void> => {
    const first = await unreceived(q);
    if (first.size === 0 || stopped) return;
    await new Promise<void>((r) => {
      const t = setTimeout(() => (waits.delete(t), r()), gapMs);
      waits.add(t);
    });
    if (stopped) return;
    const second = await unreceived(q);
    let back = 0;
    for (const [id, lock] of second) {
      const holder = holderOf(q.consumers, lock);
      if (first.get(id) !== lock || !holder || stopped) continue;
      const job = await Job.fromId(holder.w, id);
      // Its lock changed hands, or the job ended, since the look: not lost, or no longer.
      if (job && (await job.moveToWait(lock).then(() => true, () => false))) back++;
    }
    if (back > 0) said(name, `${back} job${back === 1 ? '' : 's'} Redis gave this worker in a reply lost with the connection went back to the queue (they would have waited for their locks to run out and a stall check)`);
  };

  const look = (name: string): void => {
    const q = queues.get(name);
    if (stopped || !q) return;
    if (q.running) {
      q.again = true;
      return;
    }
    q.running = sweep(name, q)
      .catch(() => undefined) // Redis gone again: the next reconnect looks again
      .finally(() => {
        q.running = undefined;
        if (q.again && !stopped) {
          q.again = false;
          look(name);
        }
      });
  };

  return {
    add(w, conn) {
      const ours = `${w.id}:`;
      // Not the first connect: a reconnect, after which ioredis sent again what had no reply.
      let connected = conn.status === 'ready';
      const onReady = () => {
        if (connected) look(w.name);
        connected = true;
      };
      const onError = (err: Error) => {
        if (isMissingLock(err.message)) look(w.name);
      };
      const c: Consumer = {
        w,
        conn,
        received: new Map(),
        pruning: false,
        stop: () => {
          conn.off('ready', onReady);
          w.off('error', onError);
        },
      };
      let q = queues.get(w.name);
      if (!q) queues.set(w.name, (q = { consumers: new Map(), again: false }));
      q.consumers.set(ours, c);
      conn.on('ready', onReady);
      w.on('error', onError);
      w.on('active', (job) => {
        c.received.set(String(job.id), ++seq);
        // A job the processor delays (DelayedError) ends without an event: those entries are dropped here.
        if (c.received.size > 2 * w.concurrency + 100 && !c.pruning) {
          c.pruning = true;
          void prune(c, ours)
            .catch(() => undefined)
            .finally(() => (c.pruning = false));
        }
      });
      const ended = (job: Job | undefined) => void (job && c.received.delete(String(job.id)));
      w.on('completed', ended);
      w.on('failed', ended);
    },
    look,
    tracked: (w) => queues.get(w.name)?.consumers.get(`${w.id}:`)?.received.size ?? 0,
    stop: () => {
      stopped = true;
      for (const t of waits) clearTimeout(t);
      for (const q of queues.values()) for (const c of q.consumers.values()) c.stop();
    },
  };
}

// A job this worker cannot do (no password for the miner's profile, no TLS material for the site the
// run asked TLS for) while another live worker can: handed on, once, to the queue of that worker's
// configuration (fleet/hand-on-queues.ts), which only workers configured so consume. Workers set up
// differently (one per site, each with its site's passwords) thus never fetch, refuse and re-queue the
// same jobs over and over: each job moves at most once. The copy keeps the job's id, data and options
// and carries the attempts it used; the original completes as handed on. A copy is made before the
// original completes, so a worker dying in between loses nothing: the original, delivered again,
// finds its live copy and runs no further. A configuration whose workers all stopped leaves its queue
// to the others (watchOrphans): they run what they can and hand on or settle the rest.
import type { Job, Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { allJobQueues, handOnQueue, handOnQueueName } from '../fleet/hand-on-queues.js';
import type { JobData } from '../fleet/job.js';
import type { Keys } from '../fleet/keys.js';

/** The returned code of a job handed on (its miner's outcome comes from the copy). */
export const HANDED_ON = 'HANDED_ON';

/** The states of a job still to run or running. */
const UNFINISHED = ['waiting', 'delayed', 'active', 'prioritized', 'waiting-children'] as const;
const LIVE = new Set<string>(UNFINISHED);

/** Whether `other` is a copy made of `job`, still to run or running. */
async function isLiveCopyOf(other: Job | undefined, job: Job): Promise<boolean> {
  const from = (other?.data as Partial<JobData> | undefined)?.prior?.from;
  return other !== undefined && from === job.queueName && LIVE.has(await other.getState());
}

/**
 * Copies the job into the hand-on queue of configuration `signature`; the caller then completes it.
 * Returns false when that queue holds a live job of the same id that is not a copy of this one (the
 * job this one was copied from, not finished yet): the caller tries again a moment later.
 */
export async function handOn(redis: Redis, k: Keys, main: Queue, job: Job, data: JobData, signature: string): Promise<boolean> {
  const q = handOnQueue(main, signature);
  // Listed before the copy is added (a worker dying next leaves no unlisted copy) and again after:
  // a watcher that found the queue empty and unlisted it in between (forgetIfEmpty) is undone.
  await redis.sadd(k.handOnQueues, signature);
  const id = String(job.id);
  const earlier = await q.getJob(id);
  if (earlier) {
    // Its copy is there already (this job was handed on before its worker died): nothing to add.
    // (Listed: the SADD above came after the copy was added.)
    if (await isLiveCopyOf(earlier, job)) return true;
    const state = await earlier.getState();
    if (LIVE.has(state)) return false;
    // A finished job of this id from an earlier pass through this queue would make add() a no-op.
    await earlier.remove();
  }
  const failedReason = job.failedReason || data.prior?.failedReason;
  const prior = { attempts: (data.prior?.attempts ?? 0) + job.attemptsMade, ...(failedReason ? { failedReason } : {}), from: job.queueName };
  await q.add(job.name, { ...data, prior }, {
    jobId: id,
    attempts: Math.max(1, (job.opts.attempts ?? 1) - job.attemptsMade),
    ...(job.opts.backoff !== undefined ? { backoff: job.opts.backoff } : {}),
    ...(job.opts.priority ? { priority: job.opts.priority } : {}),
    ...(job.opts.removeOnComplete !== undefined ? { removeOnComplete: job.opts.removeOnComplete } : {}),
    ...(job.opts.removeOnFail !== undefined ? { removeOnFail: job.opts.removeOnFail } : {}),
  });
  await redis.sadd(k.handOnQueues, signature);
  return true;
}

async function holdsJobs(q: Queue): Promise<boolean> {
  return Object.values(await q.getJobCounts(...UNFINISHED)).some((n) => n > 0);
}

/**
 * Unlists an empty hand-on queue, unless a job arrived meanwhile. Looked at again after the SREM: a
 * copy added before that second look is seen and the queue listed again; one added after it is
 * listed again by handOn's own SADD after its add. Either way no queue holding a job stays unlisted
 * (cancel, resume and the watchers find hand-on queues only through the list). Returns whether the
 * queue was forgotten.
 */
export async function forgetIfEmpty(redis: Redis, k: Keys, main: Queue, signature: string): Promise<boolean> {
  await redis.srem(k.handOnQueues, signature);
  if (!(await holdsJobs(handOnQueue(main, signature)))) return true;
  await redis.sadd(k.handOnQueues, signature);
  return false;
}

/**
 * Whether this job was handed on before (its worker died before completing it): a copy made of it,
 * in another queue, is still to run or running. The job it was itself copied from does not count.
 */
export async function handedOnBefore(main: Queue, job: Job): Promise<boolean> {
  for (const q of await allJobQueues(main)) {
    if (q.name === job.queueName) continue;
    if (await isLiveCopyOf(await q.getJob(String(job.id)), job)) return true;
  }
  return false;
}

/** How often a worker looks for hand-on queues whose workers all stopped. */
export const ORPHAN_CHECK_MS = 2_000;
/** An orphaned hand-on queue empty this long is forgotten. */
const ORPHAN_EMPTY_MS = 10_000;

export interface OrphanWatch {
  stop(): Promise<void>;
}

/**
 * Consumes (with `consume`) the hand-on queues of configurations no live worker has, until one does
 * again or the queue stays empty: their jobs are run here when this worker can, else handed on again
 * or, when no running worker can, settled with an outcome that says what is missing. Calls
 * `ownQueueUsed` once jobs were first handed on to this worker's own configuration (`own`), so that a
 * pool of workers configured alike never opens consumers on a queue nobody uses.
 */
export function watchOrphans(opts: { redis: Redis; k: Keys; main: Queue; own: string; ownQueueUsed(): void; liveSignatures(): Promise<Set<string>>; consume(queue: string): Worker; everyMs?: number }): OrphanWatch {
  const consumers = new Map<string, Worker>();
  const emptySince = new Map<string, number>();
  const drop = async (sig: string) => {
    const w = consumers.get(sig);
    consumers.delete(sig);
    emptySince.delete(sig);
    await w?.close();
  };
  const check = async () => {
    const listed = new Set(await opts.redis.smembers(opts.k.handOnQueues));
    if (listed.has(opts.own)) opts.ownQueueUsed();
    const live = await opts.liveSignatures();
    for (const sig of consumers.keys()) if (!listed.has(sig) || live.has(sig)) await drop(sig);
    for (const sig of listed) {
      if (live.has(sig)) continue;
      if (!consumers.has(sig)) consumers.set(sig, opts.consume(handOnQueueName(sig)));
      if (await holdsJobs(handOnQueue(opts.main, sig))) {
        emptySince.delete(sig);
        continue;
      }
      const since = emptySince.get(sig) ?? Date.now();
      emptySince.set(sig, since);
      if (Date.now() - since >= ORPHAN_EMPTY_MS) {
        if (await forgetIfEmpty(opts.redis, opts.k, opts.main, sig)) await drop(sig);
        else emptySince.delete(sig);
      }
    }
  };
  let running: Promise<void> | undefined;
  const look = () => {
    running ??= check()
      .catch(() => undefined) // Redis away: the next look makes up
      .finally(() => (running = undefined));
  };
  look();
  const timer = setInterval(look, opts.everyMs ?? ORPHAN_CHECK_MS);
  timer.unref();
  return {
    stop: async () => {
      clearInterval(timer);
      await running;
      await Promise.all([...consumers.keys()].map(drop));
    },
  };
}

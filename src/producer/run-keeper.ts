// A poll run left to the workers (`poll --enqueue-only`, a foreground poll interrupted) has no
// process waiting on it to notice jobs Redis lost (its host crashed before the AOF was synced, a
// failover to a replica behind): it would show as unfinished for ever, its lost miners never
// polled. Its miners and how its jobs went in are kept in Redis beside it, and a `keep` control job
// — taken by whichever worker runs, like a rollout's gate — looks at it every few seconds while it
// runs: after a while without a new outcome, it puts its lost miners' jobs in again (lost-jobs.ts).
import type { Job, Queue } from 'bullmq';
import { z } from 'zod';
import { minerTargetSchema, OPERATIONS, type JobTarget } from '../fleet/job.js';
import type { RunRecord, RunStore } from '../fleet/run-store.js';
import type { EnqueueOptions } from './enqueue.js';
import { lostJobsText, noneIfVanished, requeueLost } from './lost-jobs.js';
import { STILL_CHECK_MS } from './wait.js';
import { CONTROL_RETRY } from '../rollout/control.js';
import { redisNowMs } from '../redis/clock.js';

export const KEEP_JOB = 'keep';
/** Between two looks at a kept run. */
export const KEEP_POLL_MS = 5_000;
/** The longest a run that moves no more is left between two looks for lost jobs (a run queued behind others finds none each time). */
export const KEEP_CHECK_MAX_MS = 5 * 60_000;
/**
 * How long after it was left to the workers a run not yet all enqueued is taken as still being enqueued. Past it, its
 * enqueue was cut off (its process died): the miners it did not add go in as lost ones do.
 */
export const ENQUEUE_GRACE_MS = 60_000;
/** Miners per field of the kept record (one HSET writes them all). */
const TARGETS_PER_FIELD = 1_000;

/** How the run's jobs were enqueued: what its lost ones go in again with (its params are its record's). */
const keptOptionsSchema = z.object({
  operation: z.enum(OPERATIONS),
  timeoutMs: z.number().int().optional(),
  jobAttempts: z.number().int().optional(),
  jobBackoffMs: z.number().int().optional(),
  keepFinishedJobs: z.number().int().optional(),
  tlsSites: z.array(z.string()).optional(),
  priority: z.number().int().optional(),
});
export type KeptOptions = z.infer<typeof keptOptionsSchema>;

export interface KeepJobData {
  runId: string;
  seq: number;
  /** When it was left to the workers, by Redis's clock (absent in looks queued by an older version: its record's creation then). */
  leftAtMs?: number;
  /** The run's outcomes at the look before, since when there have been that many, and how many looks for lost jobs found none since. */
  still?: { done: number; sinceMs: number; quiet: number };
}

/** The options of `opts` that say how a job goes in (functions and retention aside). */
function keptOptions(opts: EnqueueOptions): KeptOptions {
  const { operation, timeoutMs, jobAttempts, jobBackoffMs, keepFinishedJobs, tlsSites, priority } = opts;
  return keptOptionsSchema.parse({ operation, timeoutMs, jobAttempts, jobBackoffMs, keepFinishedJobs, tlsSites: tlsSites ? [...tlsSites] : undefined, priority });
}

async function addKeepJob(control: Queue, data: KeepJobData, delayMs = KEEP_POLL_MS): Promise<void> {
  // Kept an hour once done: a look delivered again (its worker died after adding the next) adds no second chain.
  await control.add(KEEP_JOB, data, { jobId: `${data.runId}.keep.${data.seq}`, delay: delayMs, ...CONTROL_RETRY, removeOnComplete: { age: 3_600 }, removeOnFail: { age: 86_400 } });
}

/**
 * Leaves `record`'s run to the workers: its `targets` (the inventory it was enqueued from) and `opts`
 * (those it was enqueued with, at the priority its jobs have now) are kept beside it, and its first
 * look is queued. Called before its jobs go in (`poll --enqueue-only`: Redis losing its last writes
 * then loses jobs before this), or once it is left to the workers (a foreground poll interrupted).
 */
export async function leaveToWorkers(store: RunStore, control: Queue, record: RunRecord, targets: readonly JobTarget[], opts: EnqueueOptions): Promise<void> {
  const fields: string[] = ['opts', JSON.stringify(keptOptions(opts)), 'digest', record.inventoryDigest];
  for (let i = 0; i < targets.length; i += TARGETS_PER_FIELD) fields.push(`t${i / TARGETS_PER_FIELD}`, JSON.stringify(targets.slice(i, i + TARGETS_PER_FIELD)));
  await store.redis.hset(store.k.kept(record.runId), ...fields);
  await addKeepJob(control, { runId: record.runId, seq: 0, leftAtMs: await redisNowMs(store.redis) });
}

/** The kept miners and options of a run, in their enqueue order (undefined: none kept). */
async function keptOf(store: RunStore, runId: string): Promise<{ targets: JobTarget[]; digest: string; opts: KeptOptions } | undefined> {
  const h = await store.redis.hgetall(store.k.kept(runId));
  if (!h['opts'] || !h['digest']) return undefined;
  const chunks = Object.keys(h).filter((f) => /^t\d+$/.test(f)).sort((a, b) => Number(a.slice(1)) - Number(b.slice(1)));
  const targets = z.array(minerTargetSchema).parse(chunks.flatMap((f) => JSON.parse(h[f] as string) as unknown[]));
  return { targets, digest: h['digest'], opts: keptOptionsSchema.parse(JSON.parse(h['opts'])) };
}

/** The look of a `keep` job: the run ended, cancelled or deleted is let go (its kept miners deleted); otherwise the next look is queued. */
export function createKeeper(deps: { store: RunStore; jobs: Queue; control: Queue; stillCheckMs?: number; log?: (line: string) => void }) {
  const { store } = deps;
  const stillCheckMs = deps.stillCheckMs ?? STILL_CHECK_MS;
  // A shorter wait before a look for lost jobs (tests) looks more often too.
  const pollMs = Math.min(KEEP_POLL_MS, stillCheckMs / 2);
  const log = deps.log ?? ((line: string) => console.error(`worker: ${line}`));
  return async (job: Pick<Job<KeepJobData>, 'data'>): Promise<void> => {
    const { runId, seq, still, leftAtMs } = job.data;
    const record = await store.getRun(runId);
    const { done } = await store.getCounts(runId);
    const state = await store.enqueueState(runId);
    if (!record || done >= record.total || state.cancelled) {
      await store.redis.unlink(store.k.kept(runId));
      return;
    }
    // Redis's clock, not this host's: the looks are taken by whichever worker runs, on hosts whose clocks may disagree.
    const now = await redisNowMs(store.redis);
    let next = still && still.done === done ? still : { done, sinceMs: now, quiet: 0 };
    // Its jobs still going in, their miners are not lost (past ENQUEUE_GRACE_MS, its enqueue is taken as cut off).
    const enqueuing = !state.enqueued && now - (leftAtMs ?? record.createdAtMs) < ENQUEUE_GRACE_MS;
    // After each look that finds nothing lost, twice as long before the next (up to KEEP_CHECK_MAX_MS).
    if (!enqueuing && now - next.sinceMs >= Math.min(KEEP_CHECK_MAX_MS, stillCheckMs * 2 ** next.quiet)) {
      const kept = await keptOf(store, runId);
      const lost = kept ? await requeueLost(deps.jobs, store, runId, kept, kept.opts).catch(noneIfVanished) : 0;
      if (lost) log(`run ${runId}: ${lostJobsText(lost, record.total)}`);
      next = { done, sinceMs: await redisNowMs(store.redis), quiet: lost ? 0 : next.quiet + 1 };
    }
    await addKeepJob(deps.control, { runId, seq: seq + 1, still: next, leftAtMs }, pollMs);
  };
}

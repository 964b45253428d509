// Miners of a run whose jobs are gone from Redis without an outcome: Redis came back without its last
// writes (its host lost power: the AOF is synced every second) or a failover promoted a replica that
// had not caught up. No worker will ever take them, so the run would wait for them for ever (a
// foreground poll never ends, a schedule skips every tick behind it, a rollout's wave never ends).
// Their jobs go in again.
import type { Queue } from 'bullmq';
import type { JobTarget } from '../fleet/job.js';
import { allJobQueues, jobKeysOf } from '../fleet/hand-on-queues.js';
import { jobId } from '../fleet/keys.js';
import type { RunStore } from '../fleet/run-store.js';
import { addBulkThroughOutages, runJobs, type EnqueueOptions } from './enqueue.js';

/** A run's record is gone from Redis: it was flushed, or replaced by a Redis without this run. */
export class RunVanishedError extends Error {
  constructor(readonly runId: string) {
    super(
      `run ${runId} is gone from Redis (its record, outcomes and jobs): Redis was flushed, or replaced by one without its data ` +
        `(a failover to a replica that had not caught up, a restore from an older copy). Its outcomes are lost: poll again`,
    );
  }
}

/** For a requeueLost whose run may be deleted meanwhile (by retention, with its rollout): nothing to queue again then. */
export function noneIfVanished(err: unknown): number {
  if (err instanceof RunVanishedError) return 0;
  throw err;
}

/** What is said of a run's `lost` miners of `total` queued again. */
export function lostJobsText(lost: number, total: number): string {
  return `${lost} of its ${total} miners had no outcome and no job still to run in Redis (lost with writes Redis did not keep: its host crashed, or a failover): queued again`;
}

/** Miners looked at per MULTI (one atomic read of their outcomes and jobs). */
const BATCH = 1_000;
/** Between the two looks at a miner (see {@link requeueLost}). */
export const SECOND_LOOK_MS = 1_000;

/** A miner with no outcome and no job still to run: `finishedIn`, the queues holding its finished job. */
interface Lost {
  target: JobTarget;
  finishedIn: string[];
}

/**
 * Of `targets`, those with no outcome in the run and no job still to run in any queue a miner job can
 * be in (the run's, or a hand-on queue: hand-on-queues.ts): their job is gone, or finished (it has
 * `finishedOn`). A miner's outcome is written before its job ends, so a finished job without one is
 * one whose outcome Redis lost and whose worker, still running, then ended the job on the Redis that
 * came back. Read atomically per batch.
 */
async function withoutOutcomeOrJob(queue: Queue, store: RunStore, runId: string, targets: readonly JobTarget[]): Promise<Lost[]> {
  const lost: Lost[] = [];
  const outcomes = store.k.outcomes(runId);
  const where = await jobKeysOf(queue);
  for (let i = 0; i < targets.length; i += BATCH) {
    const batch = targets.slice(i, i + BATCH);
    const tx = store.redis.multi();
    const perTarget = 1 + 2 * where.queues.length;
    for (const t of batch) {
      tx.hexists(outcomes, t.minerId);
      for (const key of where.keys(jobId(runId, t.minerId))) tx.exists(key).hexists(key, 'finishedOn');
    }
    const replies = ((await tx.exec()) ?? []).map(([, v]) => v);
    batch.forEach((target, j) => {
      const at = j * perTarget;
      if (replies[at] !== 0) return;
      const finishedIn: string[] = [];
      for (let q = 0; q < where.queues.length; q++) {
        const [exists, finished] = [replies[at + 1 + 2 * q], replies[at + 2 + 2 * q]];
        if (exists === 1 && finished !== 1) return; // still to run (or running)
        if (exists === 1) finishedIn.push(where.queues[q] as string);
      }
      lost.push({ target, finishedIn });
    });
  }
  return lost;
}

/**
 * Puts the jobs of the run's lost miners (no outcome, no job) in again, with their own job ids and the
 * run's options, and returns how many. A miner's outcome is written before its job ends and may be
 * deleted, so a job that is gone or finished without one was never done (a finished one is removed
 * first: the job id is the run's); each miner is looked at twice, {@link SECOND_LOOK_MS} apart, and
 * only one lost at both looks is added. `inventory` is the run's
 * (its miners in their enqueue order; of a run cut short at enqueue, only those it holds count). A cancelled
 * run adds nothing (cancel gives its miners their outcomes). `opts` are those the run was enqueued
 * with; its params are its record's. A change's job run again is safe: see rollout/control.ts.
 */
export async function requeueLost(queue: Queue, store: RunStore, runId: string, inventory: { targets: readonly JobTarget[]; digest: string }, opts: EnqueueOptions): Promise<number> {
  const record = await store.getRun(runId);
  if (!record) throw new RunVanishedError(runId);
  // Another inventory (a schedule added again under its id) is not this run's miners.
  if (record.inventoryDigest !== inventory.digest) return 0;
  if ((await store.enqueueState(runId)).cancelled) return 0;
  const held = record.inventoryTotal === undefined ? inventory.targets : inventory.targets.slice(0, record.total);
  const done = new Set(await store.outcomeMinerIds(runId));
  const seen = await withoutOutcomeOrJob(queue, store, runId, held.filter((t) => !done.has(t.minerId)));
  if (seen.length === 0) return 0;
  await new Promise((r) => setTimeout(r, SECOND_LOOK_MS));
  const lost = await withoutOutcomeOrJob(queue, store, runId, seen.map((l) => l.target));
  const finished = lost.filter((l) => l.finishedIn.length > 0);
  const queues = finished.length ? new Map((await allJobQueues(queue)).map((q) => [q.name, q])) : undefined;
  const again: JobTarget[] = [];
  for (const l of lost) {
    let removed = true;
    for (const name of l.finishedIn) removed = (await queues?.get(name)?.remove(jobId(runId, l.target.minerId))) === 1 && removed;
    if (removed) again.push(l.target);
  }
  // Cancelled meanwhile (its lost miners are cut from it then): nothing goes in.
  if (again.length === 0 || (await store.enqueueState(runId)).cancelled) return 0;
  await addBulkThroughOutages(queue, runJobs(record, again, opts));
  return again.length;
}

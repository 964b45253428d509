// Cancels what is left of a poll run: its queued jobs are removed and each of those miners gets a
// CANCELLED outcome, so the run still ends with exactly one outcome per miner. Jobs already running
// finish normally (BullMQ will not remove a locked job), and a miner that has an outcome keeps it.
// Or, for an interrupted foreground poll, leaves what is left of it to the workers as a background poll.
import { Job, type JobType, type Queue } from 'bullmq';
import { BACKGROUND_PRIORITY } from './enqueue.js';
import { allJobQueues, closeHandOnQueues } from '../fleet/hand-on-queues.js';
import { jobDataSchema } from '../fleet/job.js';
import type { RunStore } from '../fleet/run-store.js';
import { attemptsUsed, outcomeOf } from '../workers/processor.js';
import { failedTask } from '../workers/task.js';

export interface CancelResult {
  runId: string;
  /** Queued jobs removed, each miner given a CANCELLED outcome. */
  cancelled: number;
  /** Miners with an outcome now (cancelled ones included); the others are being polled right now. */
  done: number;
  total: number;
  /**
   * Miners of the run that had no job at all (Redis refused them at enqueue, and could not record
   * the cut then, or lost them since): the run is cut down to the others now, so it can finish.
   */
  neverEnqueued: number;
}

/** How long a cancel of a run not marked fully enqueued waits for its producer to notice and stop. */
const ENQUEUE_SETTLE_MS = 500;

/** Queued job states a cancel removes from. */
const QUEUED = ['waiting', 'delayed', 'prioritized'] as const;

/** The ids of the run's jobs in `q` in these states (job ids are `<runId>.<minerId>`). */
async function runJobIds(q: Queue, runId: string, states: readonly JobType[]): Promise<string[]> {
  return (await q.getRanges([...states], 0, -1)).filter((id) => id.startsWith(`${runId}.`));
}

/** Runs `each` on the run's jobs in these states, queue by queue, `batch` at a time. */
async function eachRunJob(queues: readonly Queue[], runId: string, states: readonly JobType[], batch: number, each: (q: Queue, id: string) => Promise<void>): Promise<void> {
  for (const q of queues) {
    const ids = await runJobIds(q, runId, states);
    for (let i = 0; i < ids.length; i += batch) await Promise.all(ids.slice(i, i + batch).map((id) => each(q, id)));
  }
}

/**
 * What is left queued of an interrupted foreground poll is left to the workers as a background poll
 * (`poll --enqueue-only`'s priority): it no longer goes ahead of the next poll an operator waits for.
 * A job a worker took meanwhile runs as it is (if it is tried again, in the background tier too).
 * Returns the jobs moved.
 */
export async function leaveToBackground(queue: Queue, runId: string, batch = 500): Promise<number> {
  const queues = await allJobQueues(queue);
  let moved = 0;
  try {
    // A Job made from its id alone: changePriority needs no more, and reading each would cost a
    // round trip. One gone meanwhile (finished, cancelled) has nothing to move; one that fails to
    // move stays queued where it was: nothing is lost either way.
    await eachRunJob(queues, runId, ['prioritized', 'delayed'], batch, (q, id) =>
      new Job(q, 'poll', {}, {}, id).changePriority({ priority: BACKGROUND_PRIORITY }).then(() => void moved++, () => undefined),
    );
  } finally {
    await closeHandOnQueues(queue);
  }
  return moved;
}

export async function cancelRun(queue: Queue, store: RunStore, runId: string, batch = 500): Promise<CancelResult> {
  const record = await store.getRun(runId);
  if (!record) throw new Error(`no run "${runId}" (see bos-fleet runs)`);
  // A dry run of a change only reads: it is dropped like a poll.
  const dryRun = record.params['dryRun'] === true;
  if (record.operation !== 'poll' && !dryRun) {
    throw new Error(`run ${runId} is a ${record.operation} run of a rollout: stop it with \`bos-fleet rollout abort\` (it records which miners were changed)`);
  }
  // A producer still enqueuing this run stops at its next chunk (a chunk is added in milliseconds).
  await store.markCancelled(runId);
  const { enqueued } = await store.enqueueState(runId);
  if (!enqueued) await new Promise((r) => setTimeout(r, ENQUEUE_SETTLE_MS));
  // Job ids are `<runId>.<minerId>`: only this run's are touched, in the run's queue and in the queues
  // workers handed jobs on to (see fleet/hand-on-queues.ts).
  const queues = await allJobQueues(queue);
  let cancelled = 0;
  try {
    await eachRunJob(queues, runId, QUEUED, batch, async (q, id) => {
      const job = await q.getJob(id);
      const parsed = jobDataSchema.safeParse(job?.data);
      // Taken by a worker since the listing (or gone): it ends with its own outcome.
      if (!job || !parsed.success || (await q.remove(id)) !== 1) return;
      const reason = job.failedReason ?? parsed.data.prior?.failedReason;
      const earlier = reason ? `; its last attempt failed: ${reason}` : '';
      const result = failedTask('CANCELLED', `run cancelled by the operator before this miner was ${dryRun ? 'read' : 'polled'}${earlier}`);
      // Never replaces an outcome written meanwhile.
      if (await store.writeOutcome(outcomeOf(parsed.data, result, attemptsUsed(job, parsed.data)))) cancelled++;
    });
    // Miners with neither an outcome nor a job left were never enqueued (its producer was cancelled,
    // or Redis refused part of it) or their jobs were lost (Redis came back without its last writes,
    // a failover). Cut the run down to the others, or it would wait for them forever (and never be
    // pruned). Jobs are listed before outcomes, so a job finishing in between is seen at least once;
    // a miner seen twice counts once.
    let { done } = await store.getCounts(runId);
    let neverEnqueued = 0;
    if (done < record.total) {
      const prefix = `${runId}.`;
      const known = new Set<string>();
      for (const q of queues) for (const id of await runJobIds(q, runId, [...QUEUED, 'active'])) known.add(id.slice(prefix.length));
      for (const minerId of await store.outcomeMinerIds(runId)) known.add(minerId);
      neverEnqueued = Math.max(0, record.total - known.size);
      if (neverEnqueued > 0) await store.closeRunAt(runId, known.size, `${neverEnqueued} miners had no job (never enqueued, or lost by Redis); the run was cancelled`);
      done = (await store.getCounts(runId)).done;
    }
    return { runId, cancelled, done, total: record.total - neverEnqueued, neverEnqueued };
  } finally {
    await closeHandOnQueues(queue);
  }
}

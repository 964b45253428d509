// A change job's steps around the task runner: prepare (read, validate) → journal `before` in Redis →
// apply (write, read back), and what an attempt that cannot finish them reports.
import { DelayedError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { JobData } from '../fleet/job.js';
import type { RunStore } from '../fleet/run-store.js';
import type { StopGuard } from '../fleet/journal.js';
import { OUTCOME_UNKNOWN_NOTE } from '../core/fleet-error.js';
import { redisClockOffsetMs } from '../redis/clock.js';
import type { Executor } from './executor.js';
import { unwrittenResult, type MutationData, type PreparedChange } from './ops/mutate.js';
import { failedTask, type TaskResult } from './task.js';

/**
 * A change job: prepare (read, validate) → journal `before` in Redis → apply (write, read back). The
 * journal is written before the miner is, so when this job runs again after its worker died between
 * the write and the outcome, it finds the change made and still reports it as applied, with the
 * state from before it (a rollback restores that), not as "unchanged" with the new state as before.
 */
export async function runChange(data: JobData, executor: Executor, store: RunStore, rollout?: { id: string; guard: StopGuard }, hold?: JobHold): Promise<TaskResult> {
  const started = Date.now();
  const clock = await sharedClock(data, store);
  const prepared = await executor.run({ job: data, phase: 'prepare', ...clock });
  const journaled = await store.journaled(data.runId, data.target.minerId);
  if (!prepared.ok) return journaled ? unsettled(prepared) : prepared;
  const p = prepared.data as PreparedChange;
  const change = madeEarlier(journaled, p) ?? unwrittenResult(p, data.params['dryRun'] === true);
  if (change) return { ...prepared, data: change };
  // An earlier attempt's record wins (read above): only the first attempt writes one. A rollout
  // stopped while this miner was being read is not written to (it was checked before the read).
  const kept = journaled ?? (await store.journalBefore(data.runId, data.target.minerId, p.before, rollout?.guard));
  if ('stopped' in kept) return { ...failedTask('CANCELLED', `rollout ${rollout?.id} was ${kept.stopped} before this miner was changed`), attempts: prepared.attempts, durationMs: Date.now() - started, transport: prepared.transport };
  const applied = await applyWhileHeld(data, executor, kept.before, clock, hold);
  return { ...applied, attempts: Math.max(prepared.attempts, applied.attempts), durationMs: Date.now() - started };
}

/** How long this worker surely still holds its job (ms; Infinity: no end), or undefined once it does not. */
export type JobHold = () => Promise<number | undefined>;

/**
 * A job's hold: its BullMQ lock (the key `{queue}:{jobId}:lock`, holding the worker's token) is still
 * this worker's, and for how long. Read in a transaction of reads, not a script: Redis runs it even
 * while it refuses writes (full memory or disk, a replica), and on every version bos-fleet supports.
 */
export function lockHold(redis: Redis, job: Pick<Job, 'queueQualifiedName' | 'id'>, token: string): JobHold {
  const key = `${job.queueQualifiedName}:${job.id}:lock`;
  return async () => {
    const [[, holder], [, ttl]] = (await redis.multi().get(key).pttl(key).exec()) as [[Error | null, string | null], [Error | null, number]];
    if (holder !== token) return undefined;
    return ttl === -1 ? Infinity : ttl > 0 ? ttl : undefined;
  };
}

/**
 * The job is no longer this worker's: it was stopped (frozen, suspended, cut off from Redis) for
 * longer than its lock, and BullMQ's stall check gives (or gave) the job to a worker again — another
 * one, or this one later — which makes the change and records its outcome. Thrown as BullMQ's
 * DelayedError, so that BullMQ leaves the job as it is, to that worker.
 */
export class TakenOverError extends DelayedError {}

/** Attempts of an apply whose write window closed before the write was sent, while the hold lasts. */
const REOPENED_WINDOWS = 10;

/**
 * The apply step, its writes sent only while this worker surely holds the job: before its lock could
 * expire (3/4 of its time left, read just before). A worker that wakes from a freeze, or whose write
 * waited (for a connection, a thread) past that, sends nothing: it looks again, and writes with a new
 * window while the job is still its own, or gives the job up (TakenOverError) — another worker may
 * have made the change meanwhile, and a rollback undone it since.
 */
async function applyWhileHeld(data: JobData, executor: Executor, before: unknown, clock: { clockOffsetMs?: number }, hold: JobHold | undefined): Promise<TaskResult> {
  let closed: TaskResult | undefined;
  for (let i = 0; ; i++) {
    const askedAt = Date.now();
    const left = hold ? await hold() : Infinity;
    if (left === undefined) throw new TakenOverError(`job of miner ${data.target.minerId} (run ${data.runId}) lost its lock while this worker was stopped for longer than the lock lasts (frozen, suspended or cut off from Redis): its change was not sent from here; the job runs again on whichever worker takes it up (another may have done it already)`);
    if (closed && i > REOPENED_WINDOWS) return closed; // still its own: the outcome says the write never went
    const window = Number.isFinite(left) ? { writeNotAfterMs: askedAt + Math.floor(left * 0.75) } : {};
    const applied = await executor.run({ job: data, phase: 'apply', before, ...clock, ...window });
    if (applied.ok || !applied.error?.context.writeWindowClosed) return applied;
    closed = applied;
  }
}

/**
 * A reboot's request time is on Redis's clock (the wave's start): the task compares the miner's boot
 * time with it on that clock too, not on this host's, which may be off (redis/clock.ts).
 */
async function sharedClock(data: JobData, store: RunStore): Promise<{ clockOffsetMs?: number }> {
  const kind = (data.params['mutation'] as { kind?: unknown } | undefined)?.kind;
  return kind === 'reboot' ? { clockOffsetMs: await redisClockOffsetMs(store.redis) } : {};
}

/**
 * An earlier attempt of this change journaled it (then wrote, or was cut off about to) and this one
 * could not read the miner (unreachable, timed out, its breaker open): whether the change landed is
 * still unknown, and the outcome says so, not that the miner was merely unreachable. Retried, as
 * OUTCOME_UNKNOWN of a change is (see {@link changeRetryable}), until an attempt reads it.
 */
function unsettled(r: TaskResult): TaskResult {
  if (!r.error?.retryable || r.code === 'OUTCOME_UNKNOWN') return r;
  return { ...r, ...failedTask('OUTCOME_UNKNOWN', `an earlier attempt wrote to this miner (or was cut off about to) and it could not be read back since: ${r.code}: ${r.error.message}${OUTCOME_UNKNOWN_NOTE}`), attempts: r.attempts, durationMs: r.durationMs, transport: r.transport };
}

/**
 * Whether a failed attempt is tried again at job level. A change whose outcome is unknown (its write
 * cut off, and the miner gone before it could be read back) is: the next attempt reads the miner
 * before anything else, finds the change made (applied, with the journaled before) or not (written
 * again: an absolute set), so it is settled by a read, never by a blind second write.
 */
export function changeRetryable(data: JobData, r: TaskResult): boolean {
  return !r.ok && (r.error?.retryable === true || (data.operation !== 'poll' && r.code === 'OUTCOME_UNKNOWN'));
}

/** The change an earlier attempt journaled and made: it is on the miner now (the read found it so). */
function madeEarlier(journaled: { before: unknown } | undefined, p: PreparedChange): MutationData | undefined {
  return journaled && p.equal ? { change: 'applied', before: journaled.before, after: p.before, verified: true } : undefined;
}

/**
 * A change job of a rollout that was stopped (aborted, halted) before this miner's outcome. It is never
 * written now. When an earlier attempt journaled the miner's state (its worker died after that, maybe
 * after its write), the miner is read to tell whether that write landed: if it did, the outcome says
 * the change was applied (a rollback restores it), not that the miner was never changed.
 */
export async function stoppedChange(data: JobData, executor: Executor, store: RunStore, why: string): Promise<TaskResult> {
  const journaled = await store.journaled(data.runId, data.target.minerId);
  if (!journaled) return failedTask('CANCELLED', `${why} before this miner was changed`);
  const prepared = await executor.run({ job: data, phase: 'prepare', ...(await sharedClock(data, store)) });
  const made = prepared.ok ? madeEarlier(journaled, prepared.data as PreparedChange) : undefined;
  if (made) return { ...prepared, data: made };
  // A refusal (out of range, unsupported) comes after a read that found the change not there.
  const readBack = prepared.ok || prepared.code === 'INVALID_REQUEST' || prepared.code === 'UNSUPPORTED_BY_FIRMWARE';
  return failedTask(
    'CANCELLED',
    readBack
      ? `${why}; an earlier attempt on this miner was cut off, and the miner does not have its change (read back)`
      : `${why}; an earlier attempt on this miner was cut off and the miner could not be read back (${prepared.code}): its change may have been written, and a rollback restores the state recorded before it`,
  );
}

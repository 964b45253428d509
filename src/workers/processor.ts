// The BullMQ processor: validates the job, skips miners that already have an outcome (a stalled job
// running again), runs the task, and decides from the typed code whether BullMQ should retry.
import { DelayedError, UnrecoverableError, type Job, type Queue } from 'bullmq';
import type { RolloutStore } from '../rollout/store.js';
import { holdSiteSlot, park, PARKED_MS, type SiteSlot } from '../rollout/site-limit.js';
import { CODE_INFO, isErrorCode } from '../core/error-codes.js';
import { isFinalFailure, jobDataSchema, type JobData } from '../fleet/job.js';
import type { Outcome } from '../fleet/outcome.js';
import type { RunStore } from '../fleet/run-store.js';
import type { Executor } from './executor.js';
import { failedTask, type TaskResult } from './task.js';
import { missingFor, type WorkerRegistry } from './registry.js';
import { HANDED_ON, handedOnBefore, handOn } from './hand-on.js';
import { handOnQueueName } from '../fleet/hand-on-queues.js';
import { changeRetryable, lockHold, runChange, stoppedChange, TakenOverError } from './change-job.js';
import { OUTCOME_REFUSED_WAIT_MS, writeOutcomeThroughRefusals } from './outcome-write.js';

export interface ProcessorDeps {
  store: RunStore;
  executor: Executor;
  rollouts: RolloutStore;
  /** How long a per-site slot is leased (a dead worker's slot frees itself after this). */
  siteLeaseMs?: number;
  /** This worker's capabilities, and the other live workers': a job this one cannot do goes to one that can. */
  registry: WorkerRegistry;
  /** The miner-job queue: a job that frees a site's slot wakes a parked job of that site. */
  jobs: Queue;
  /** Where a job given up to another worker is said (TakenOverError). */
  notice?: (line: string) => void;
  /** How long an outcome waits for a Redis refusing writes (outcome-write.ts). */
  outcomeRefusedWaitMs?: number;
}

/** `finishedAtMs`: when the miner's part ended (default: now). */
export function outcomeOf(data: JobData, result: TaskResult, jobAttempts: number, finishedAtMs = Date.now()): Outcome {
  const code = result.ok ? 'OK' : isErrorCode(result.code) ? result.code : 'INTERNAL';
  return {
    runId: data.runId,
    minerId: data.target.minerId,
    host: data.target.host,
    port: data.target.port,
    operation: data.operation,
    status: result.ok ? 'ok' : 'failed',
    code,
    attempts: result.attempts,
    jobAttempts,
    durationMs: result.durationMs,
    finishedAt: new Date(finishedAtMs).toISOString(),
    transport: result.transport,
    ...(result.error ? { error: { message: result.error.message, suggestion: result.error.suggestion } } : {}),
    ...(result.data !== undefined ? { data: result.data } : {}),
  };
}

const SKIPPED = ' (next attempt skipped: circuit open)';

/**
 * How a failed job attempt that BullMQ will run again is kept (its failedReason): the code, the
 * message, and the attempt's in-call attempts and time, so that a later attempt can report it.
 */
export function retryReason(result: TaskResult): string {
  return `${result.code}: ${result.error?.message ?? ''} [${result.attempts} in-call attempt${result.attempts === 1 ? '' : 's'}, ${result.durationMs} ms]`;
}

const REASON = /^([A-Z_]+): (.*?)(?: \[(\d+) in-call attempts?, (\d+) ms\])?$/s;

/**
 * When a job attempt was skipped by an open breaker, the previous attempt's real failure (kept by
 * BullMQ as failedReason, see {@link retryReason}) is the truthful result: its code, message,
 * in-call attempts and time — not the skipped attempt's zero.
 */
export function withEarlierCause(result: TaskResult, failedReason: string | undefined): TaskResult {
  if (result.code !== 'CIRCUIT_OPEN' || !result.error || !failedReason) return result;
  const m = REASON.exec(failedReason);
  const code = m?.[1];
  if (!m || !code || !isErrorCode(code) || code === 'CIRCUIT_OPEN') return result;
  const message = m[2]!.endsWith(SKIPPED) ? m[2]! : `${m[2]}${SKIPPED}`;
  return {
    ...result,
    code,
    ...(m[3] !== undefined ? { attempts: Number(m[3]) } : {}),
    ...(m[4] !== undefined ? { durationMs: Number(m[4]) } : {}),
    error: { ...result.error, code, message, retryable: CODE_INFO[code].retryable, suggestion: CODE_INFO[code].suggestion },
  };
}

async function delay(job: Job, token: string | undefined, ms: number): Promise<never> {
  await job.moveToDelayed(Date.now() + ms + Math.floor(Math.random() * ms), token);
  throw new DelayedError();
}

/** The job-level attempts a job has used: in its queue, and in any queue it was handed on from. */
export function attemptsUsed(job: Pick<Job, 'attemptsMade'>, data: JobData): number {
  return job.attemptsMade + (data.prior?.attempts ?? 0);
}


/**
 * A job that BullMQ failed for good without our processor having written its outcome: it stalled
 * more often than allowed (its workers kept dying on it), or its last attempt threw something other
 * than a miner result (e.g. Redis refused the outcome). The run still gets exactly one outcome for
 * the miner — an INTERNAL one saying what happened — instead of waiting for it forever. An outcome
 * already there is kept (HSETNX); one Redis refuses is tried again for up to `refusedWaitMs`, as the
 * processor's own outcomes are. Returns whether one was written.
 */
export async function settleFailedJob(store: RunStore, job: Job | undefined, err: Error, refusedWaitMs = OUTCOME_REFUSED_WAIT_MS): Promise<boolean> {
  if (!job) return false;
  const final = isFinalFailure(job, err);
  // Our processor's own final failures start with their code and were written before being thrown.
  const code = /^([A-Z_]+):/.exec(err.message)?.[1];
  if (!final || (code !== undefined && isErrorCode(code))) return false;
  const parsed = jobDataSchema.safeParse(job.data);
  if (!parsed.success) return false;
  const why = /stalled more than allowable limit/.test(err.message)
    ? `its worker stopped while on this miner more often than allowed (killed, out of memory, or cut off from Redis): ${err.message}`
    : `the job failed outside the miner's result: ${err.message}`;
  return writeOutcomeThroughRefusals(store, outcomeOf(parsed.data, failedTask('INTERNAL', why), attemptsUsed(job, parsed.data)), refusedWaitMs);
}

/** The longest a miner job of a paused rollout waits before it looks at the rollout again. */
export const PAUSED_RECHECK_MAX_MS = 10 * 60_000;

/**
 * How long a miner job of a rollout paused since `pausedAt` waits before it looks again (plus up to as
 * much jitter): as long as the pause has lasted, from 1 s to {@link PAUSED_RECHECK_MAX_MS}. A 100,000-
 * miner wave paused for the night so costs Redis a few checks per job, not one every second or two;
 * `rollout resume` and `abort` release the held jobs at once.
 */
export function pausedRecheckMs(pausedAt: string, nowMs = Date.now()): number {
  const paused = nowMs - Date.parse(pausedAt);
  return Math.min(PAUSED_RECHECK_MAX_MS, Math.max(1_000, Number.isFinite(paused) ? paused : 0));
}

/** How soon a job this worker cannot do, where only the workers that can take it, is offered to them again. */
export const HAND_BACK_MS = 200;

export function createProcessor({ store, executor, rollouts, registry, jobs, notice, siteLeaseMs = 120_000, outcomeRefusedWaitMs = OUTCOME_REFUSED_WAIT_MS }: ProcessorDeps) {
  const writeOutcome = (outcome: Outcome) => writeOutcomeThroughRefusals(store, outcome, outcomeRefusedWaitMs);
  return async (job: Job, token?: string): Promise<{ code: string; skipped?: boolean }> => {
    const parsed = jobDataSchema.safeParse(job.data);
    const jobAttempts = job.attemptsMade + 1;
    if (!parsed.success) {
      const raw = job.data as Partial<JobData> | undefined;
      const issue = parsed.error.issues[0];
      const message = `job ${job.id}: field ${issue?.path.join('.') ?? '?'}: ${issue?.message ?? 'invalid'}`;
      if (raw?.runId && raw.target?.minerId) {
        const partial = { runId: raw.runId, operation: String(raw.operation ?? 'unknown'), target: { ...raw.target, host: String(raw.target.host ?? ''), port: Number(raw.target.port ?? 0) } } as JobData;
        await writeOutcome(outcomeOf(partial, failedTask('INVALID_JOB', message), jobAttempts));
      }
      throw new UnrecoverableError(`INVALID_JOB: ${message}`);
    }
    const data = parsed.data;
    // Attempts this job used in another queue before it was handed on to this one (hand-on.ts).
    const prior = data.prior?.attempts ?? 0;
    // At-least-once delivery: a job delivered again (after a stall or a failed attempt, or handed on
    // from another queue) that already has an outcome never touches the miner again, nor does one
    // delivered again whose worker died after handing it on (only a delivery after a stall or a
    // failed attempt can have copies of itself). A first delivery cannot be either: skip the reads.
    const again = job.attemptsMade > 0 || job.stalledCounter > 0;
    if (again || data.prior) {
      const existing = await store.getOutcome(data.runId, data.target.minerId);
      if (existing) return { code: existing.code, skipped: true };
      if (again && (await handedOnBefore(jobs, job))) return { code: HANDED_ON, skipped: true };
    }

    // A job this worker lacks the password or the TLS material for: handed on (no attempt used) to the
    // workers that can do it, while one runs — a miner is never failed, nor reached in plaintext, for
    // this worker's configuration. When none can, its outcome says what is missing.
    const missing = missingFor(data, registry.caps);
    if (missing) {
      const target = await registry.handOnTarget(data);
      if (target) {
        // Already in that configuration's queue (this worker took it while the queue had no worker): theirs to take.
        if (handOnQueueName(target) === job.queueName) await delay(job, token, HAND_BACK_MS);
        if (await handOn(store.redis, store.k, jobs, job, data, target)) return { code: HANDED_ON, skipped: true };
        await delay(job, token, HAND_BACK_MS); // the job it was copied from is still finishing there
      }
      if (await registry.olderCanRun(data)) await delay(job, token, HAND_BACK_MS);
      const result = failedTask('INVALID_JOB', `no running worker has ${missing}${data.tls ? ' (the run asked for TLS: never polled in plaintext)' : ''}: give the workers the profile (--credentials) or TLS file (--tls) this inventory needs`);
      await writeOutcome(outcomeOf(data, result, jobAttempts + prior));
      throw new UnrecoverableError(`INVALID_JOB: ${result.error?.message ?? ''}`);
    }

    // A rollout's miner job: honour pause / abort, and the per-site in-flight limit.
    const rolloutId = typeof data.params['rolloutId'] === 'string' ? data.params['rolloutId'] : undefined;
    let siteSlot: SiteSlot | undefined;
    if (rolloutId) {
      const st = await rollouts.status(rolloutId);
      // Deleted (a schedule's finished rollout, by its retention): a copy of one of its jobs delivered
      // late must not change the miner again, with nothing left to record it in.
      if (!st) return { code: 'CANCELLED', skipped: true };
      if (st.state === 'paused') await delay(job, token, pausedRecheckMs(st.updatedAt));
      if (st.state === 'aborted' || st.state === 'halted') {
        const result = await stoppedChange(data, executor, store, `rollout ${rolloutId} was ${st.state}`);
        await writeOutcome(outcomeOf(data, result, jobAttempts + prior));
        return { code: result.code };
      }
      const limit = data.params['maxInFlightPerSite'];
      if (typeof limit === 'number' && limit > 0) {
        const slotKey = rollouts.siteKey(rolloutId, data.target.site || '-');
        siteSlot = await holdSiteSlot(store.redis, slotKey, String(job.id), limit, siteLeaseMs);
        if (!siteSlot) {
          // Parked until a slot of its site frees (see site-limit.ts), not tried again and again.
          await park(store.redis, slotKey, String(job.id), rollouts.parkedSitesKey(rolloutId));
          await job.moveToDelayed(Date.now() + PARKED_MS, token);
          throw new DelayedError();
        }
      }
    }
    let result: TaskResult;
    let endedAt: number;
    try {
      result = data.operation === 'poll' ? await executor.run({ job: data }) : await runChange(data, executor, store, rolloutId ? { id: rolloutId, guard: rollouts.stopGuard(rolloutId) } : undefined, token ? lockHold(store.redis, job, token) : undefined);
    } catch (err) {
      if (err instanceof TakenOverError) {
        notice?.(err.message);
        // The slot is the job's (its id), and the job no longer this worker's to free it.
        siteSlot?.leave();
        siteSlot = undefined;
      }
      throw err;
    } finally {
      // The miner's change ends here, before its site's slot goes to the next miner.
      endedAt = Date.now();
      await siteSlot?.release(jobs);
    }
    const maxAttempts = job.opts.attempts ?? 1;
    const retryable = changeRetryable(data, result);
    // An attempt skipped by an open breaker reports (and hands on) the earlier attempt's real failure.
    const final = withEarlierCause(result, job.failedReason || data.prior?.failedReason);
    if (retryable && jobAttempts < maxAttempts) {
      // BullMQ re-runs the job after its backoff; only the final attempt writes the outcome.
      throw new Error(retryReason(final));
    }
    await writeOutcome(outcomeOf(data, final, jobAttempts + prior, endedAt));
    if (!final.ok) throw new UnrecoverableError(`${final.code}: ${final.error?.message ?? ''}`);
    return { code: final.code };
  };
}

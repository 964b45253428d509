// The producer: turns an inventory and an operation into a run record and one job per miner,
// enqueued in chunks with deterministic job ids (enqueuing the same run twice adds nothing).
import type { Queue } from 'bullmq';
import { jobId } from '../fleet/keys.js';
import type { JobData, JobTarget, Operation } from '../fleet/job.js';
import { newRunId, type RunRecord, type RunStore } from '../fleet/run-store.js';
import { DEFAULT_RETENTION, type RetentionPolicy } from '../fleet/retention.js';
import type { Inventory } from './inventory.js';
import { siteHasTls } from '../core/tls.js';
import { headroomProblem, redisMemory, redisRefusalAdvice } from '../redis/durability.js';
import { isConnectionDrop } from '../redis/connection-drop.js';

/** Redis refused a run for want of memory (nothing of it was written). */
export class RedisFullError extends Error {}

export interface EnqueueOptions {
  operation: Operation;
  params?: Record<string, unknown>;
  runId?: string;
  timeoutMs?: number;
  /** BullMQ attempts per job (job-level retries for retryable codes). */
  jobAttempts?: number;
  jobBackoffMs?: number;
  /** Jobs per addBulk (one Redis transaction each). */
  chunkSize?: number;
  /** Per-miner params (merged over `params`), e.g. a rollback's per-miner target value. */
  paramsFor?: (target: JobTarget) => Record<string, unknown>;
  /** Per-miner operation, when its params make it another one (a rollback restoring a power target for some miners, a hashrate target for others). */
  operationFor?: (target: JobTarget) => Operation;
  /** Finished poll runs kept in Redis; older ones are deleted when a new poll run is created. */
  retention?: RetentionPolicy;
  /** A poll run's series for retention: the schedule whose tick it is (none: `bos-fleet poll`'s). */
  series?: string;
  /** BullMQ's finished jobs kept, completed and failed each (their outcomes are in the run). */
  keepFinishedJobs?: number;
  /** Sites (`*` = all) whose miners must be reached over TLS: their jobs say so to every worker. */
  tlsSites?: readonly string[];
  /** BullMQ priority of the run's jobs: 0 (the default: a rollout's changes) goes first, then {@link FOREGROUND_PRIORITY}, then {@link BACKGROUND_PRIORITY}. */
  priority?: number;
  /** Runs once the run's record is in, before its first job: what must be in Redis before any job is (a lost tail of writes loses it last). */
  beforeJobs?: (record: RunRecord) => Promise<void>;
}

/**
 * The priority of the reads an operator waits for (`poll` in the foreground, a dry run): their jobs
 * go after a rollout's changes, which carry none (BullMQ takes jobs without a priority before
 * prioritized ones, lower numbers first), so a curtailment rollout started while the farm is being
 * polled does not wait behind that poll's miners. Job-level retries keep their priority.
 */
export const FOREGROUND_PRIORITY = 1;

/**
 * The priority of polls left to separate workers (`poll --enqueue-only`, schedule ticks): their jobs
 * wait while a rollout's changes, a `poll` run in the foreground or a dry run are queued. A
 * curtailment rollout or an operator's poll of a rack does not wait behind the farm's regular poll of
 * every miner.
 */
export const BACKGROUND_PRIORITY = 100;

/**
 * Finished BullMQ jobs kept per state (completed, failed): enough to make a re-enqueue of a recent run
 * a no-op, bounded so that a farm's every-minute polls cannot fill Redis with failed jobs.
 */
export const KEEP_FINISHED_JOBS = 200_000;

export const DEFAULT_JOB_ATTEMPTS = 3;
export const DEFAULT_CHUNK_SIZE = 250;
/**
 * The first addBulk is this small so that workers start on the first miners at once instead of
 * waiting for a whole chunk's transaction (Redis runs it atomically, blocking every other client).
 */
export const FIRST_CHUNK_SIZE = 25;

export async function enqueueRun(queue: Queue, store: RunStore, inventory: Inventory, opts: EnqueueOptions): Promise<RunRecord> {
  const now = Date.now();
  const wanted: RunRecord = {
    runId: opts.runId ?? newRunId(now),
    operation: opts.operation,
    params: opts.params ?? {},
    inventoryFile: inventory.file,
    inventoryDigest: inventory.digest,
    createdAt: new Date(now).toISOString(),
    createdAtMs: now,
    total: inventory.targets.length,
    ...(opts.operation === 'poll' ? { retention: opts.retention ?? DEFAULT_RETENTION, ...(opts.series ? { series: opts.series } : {}) } : {}),
  };
  // A run that cannot fit is refused whole, before anything is written (an existing run re-enqueued adds nothing).
  if (!(opts.runId && (await store.getRun(opts.runId)))) await ensureRoom(store, inventory.targets.length, opts.operation === 'poll' ? (opts.retention ?? DEFAULT_RETENTION) : undefined, now, opts.series);
  const existing = await store.createRun(wanted);
  const { created } = existing;
  if (existing.record.inventoryDigest !== wanted.inventoryDigest || existing.record.operation !== wanted.operation) {
    throw new Error(`run ${existing.record.runId} already exists with a different ${existing.record.operation !== wanted.operation ? 'operation' : 'inventory'}; use a new run id`);
  }
  // Enqueued again after Redis refused part of it: whole again, the refused miners are added below.
  const record = created ? existing.record : await store.reopenRun(existing.record);
  await opts.beforeJobs?.(record);
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  for (let i = 0; i < inventory.targets.length; ) {
    // `bos-fleet cancel` while this run is still being enqueued: stop adding its jobs.
    if (i > 0 && (await store.enqueueState(record.runId)).cancelled) {
      throw new Error(`run ${record.runId} was cancelled while being enqueued: ${i.toLocaleString('en-US')} of ${record.total.toLocaleString('en-US')} miners were enqueued, the rest never will be`);
    }
    const chunk = inventory.targets.slice(i, i + (i === 0 ? Math.min(FIRST_CHUNK_SIZE, chunkSize) : chunkSize));
    await addChunk(queue, store, record, i, runJobs(record, chunk, opts));
    i += chunk.length;
  }
  // Best effort: without the mark, a cancel only takes a moment longer to be sure nothing is still coming.
  await store.markEnqueued(record.runId).catch(() => undefined);
  if (created && record.operation === 'poll') {
    // The run is enqueued whatever happens here: a failed clean-up is said, not thrown.
    await store.pruneRuns(opts.retention ?? DEFAULT_RETENTION, now, opts.series).catch((err: unknown) => {
      console.error(`bos-fleet: run ${record.runId} is enqueued, but deleting old poll runs failed: ${err instanceof Error ? err.message : String(err)}`);
    });
  }
  return record;
}

/**
 * Refuses (RedisFullError) a run that would not fit under Redis's maxmemory. A poll first deletes the
 * finished poll runs its retention would delete once it is created (keeping one fewer, as it will
 * count), so lowering --keep-runs makes room on the same command.
 */
async function ensureRoom(store: RunStore, miners: number, retention: RetentionPolicy | undefined, now: number, series?: string): Promise<void> {
  let problem = headroomProblem(await redisMemory(store.redis), miners);
  if (!problem || !retention) {
    if (problem) throw new RedisFullError(`${problem}. Nothing was enqueued.`);
    return;
  }
  const deleted = await store.pruneRuns({ ...retention, keepRuns: Math.max(0, retention.keepRuns - 1) }, now, series);
  // UNLINK frees big hashes in the background: give it a moment to show in used_memory.
  for (let waited = 0; deleted.length > 0 && waited < 2_000 && problem; waited += 100) {
    await new Promise((r) => setTimeout(r, 100));
    problem = headroomProblem(await redisMemory(store.redis), miners);
  }
  if (problem) throw new RedisFullError(`${problem}. Nothing was enqueued${deleted.length ? ` (${deleted.length} old finished poll run${deleted.length === 1 ? '' : 's'} deleted to make room, not enough)` : ''}.`);
}

/** The BullMQ jobs of `targets` in `record`'s run, one per miner, with its deterministic job id. */
export function runJobs(record: RunRecord, targets: readonly JobTarget[], opts: EnqueueOptions): { name: string; data: JobData; opts: { jobId: string } }[] {
  return targets.map((target) => {
    const data: JobData = {
      runId: record.runId,
      operation: opts.operationFor?.(target) ?? opts.operation,
      target,
      params: opts.paramsFor ? { ...record.params, ...opts.paramsFor(target) } : record.params,
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.tlsSites && siteHasTls(opts.tlsSites, target.site) ? { tls: true } : {}),
    };
    return {
      name: opts.operation,
      data,
      opts: {
        jobId: jobId(record.runId, target.minerId),
        ...(opts.priority ? { priority: opts.priority } : {}),
        attempts: opts.jobAttempts ?? DEFAULT_JOB_ATTEMPTS,
        backoff: { type: 'exponential', delay: opts.jobBackoffMs ?? 2_000, jitter: 0.5 },
        removeOnComplete: { age: 24 * 3600, count: opts.keepFinishedJobs ?? KEEP_FINISHED_JOBS },
        removeOnFail: { age: 7 * 24 * 3600, count: opts.keepFinishedJobs ?? KEEP_FINISHED_JOBS },
      },
    };
  });
}

/** Attempts of a chunk cut off by the connection (each waits for ioredis to reconnect, then 0.2 s, 0.4 s … 5 s). */
export const CHUNK_ATTEMPTS = 30;

/**
 * `addBulk`, tried again when the connection drops under it: ioredis aborts a transaction in flight
 * when its connection closes, where a single command waits for the reconnect. Job ids are
 * deterministic, so the jobs of the chunk that got in before the drop are not added twice.
 */
export async function addBulkThroughOutages(queue: Queue, jobs: Parameters<Queue['addBulk']>[0]): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await queue.addBulk(jobs);
      return;
    } catch (err) {
      if (!isConnectionDrop(err) || attempt >= CHUNK_ATTEMPTS) throw err;
      await new Promise((r) => setTimeout(r, Math.min(5_000, 100 * 2 ** attempt)));
    }
  }
}

/**
 * Adds one chunk; when Redis refuses it (out of memory, most often), says which run stopped where,
 * and closes the run at what was enqueued if Redis still takes that small write, so the run can
 * finish (and be pruned) instead of waiting forever for miners that were never queued.
 */
async function addChunk(queue: Queue, store: RunStore, record: RunRecord, before: number, jobs: { name: string; data: JobData; opts: { jobId: string } }[]): Promise<void> {
  try {
    await addBulkThroughOutages(queue, jobs);
  } catch (err) {
    // Chunks before this one are in whole; of this one, count the jobs that are there (reads work on a full Redis).
    let enqueued = before;
    for (const job of jobs) if (await queue.getJob(job.opts.jobId).catch(() => undefined)) enqueued++;
    const closed = await store.closeRunAt(record.runId, enqueued, (err as Error).message).then(
      () => true,
      () => false,
    );
    throw new Error(
      `run ${record.runId}: Redis ${isConnectionDrop(err) ? 'stayed unreachable for' : 'refused'} its jobs after ${enqueued.toLocaleString('en-US')} of ${record.total.toLocaleString('en-US')} miners (${(err as Error).message}). ` +
        `The ${enqueued.toLocaleString('en-US')} enqueued are polled; the other ${(record.total - enqueued).toLocaleString('en-US')} are not in this run` +
        (closed ? ' (the run now counts only those enqueued, so it can finish)' : `, and the run shows as unfinished until \`bos-fleet cancel ${record.runId}\` (Redis refused to record the cut too)`) +
        `. ${redisRefusalAdvice((err as Error).message)} Then poll again.`,
    );
  }
}

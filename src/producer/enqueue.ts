// The producer: turns an inventory and an operation into a run record and one job per miner,
// enqueued in chunks with deterministic job ids (enqueuing the same run twice adds nothing).
import type { Queue } from 'bullmq';
import { jobId } from '../fleet/keys.js';
import type { JobData, JobTarget, Operation } from '../fleet/job.js';
import { DEFAULT_RETENTION, newRunId, type RetentionPolicy, type RunRecord, type RunStore } from '../fleet/run-store.js';
import type { Inventory } from './inventory.js';
import { siteHasTls } from '../core/tls.js';

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
  /** Finished poll runs kept in Redis; older ones are deleted when a new poll run is created. */
  retention?: RetentionPolicy;
  /** BullMQ's finished jobs kept, completed and failed each (their outcomes are in the run). */
  keepFinishedJobs?: number;
  /** Sites (`*` = all) whose miners must be reached over TLS: their jobs say so to every worker. */
  tlsSites?: readonly string[];
}

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
  };
  const { record, created } = await store.createRun(wanted);
  if (record.inventoryDigest !== wanted.inventoryDigest || record.operation !== wanted.operation) {
    throw new Error(`run ${record.runId} already exists with a different ${record.operation !== wanted.operation ? 'operation' : 'inventory'}; use a new run id`);
  }
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  for (let i = 0; i < inventory.targets.length; ) {
    const chunk = inventory.targets.slice(i, i + (i === 0 ? Math.min(FIRST_CHUNK_SIZE, chunkSize) : chunkSize));
    i += chunk.length;
    await queue.addBulk(
      chunk.map((target) => {
        const data: JobData = {
          runId: record.runId,
          operation: opts.operation,
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
            attempts: opts.jobAttempts ?? DEFAULT_JOB_ATTEMPTS,
            backoff: { type: 'exponential', delay: opts.jobBackoffMs ?? 2_000, jitter: 0.5 },
            removeOnComplete: { age: 24 * 3600, count: opts.keepFinishedJobs ?? KEEP_FINISHED_JOBS },
            removeOnFail: { age: 7 * 24 * 3600, count: opts.keepFinishedJobs ?? KEEP_FINISHED_JOBS },
          },
        };
      }),
    );
  }
  if (created && record.operation === 'poll') {
    // The run is enqueued whatever happens here: a failed clean-up is said, not thrown.
    await store.pruneRuns(opts.retention ?? DEFAULT_RETENTION, now).catch((err: unknown) => {
      console.error(`bos-fleet: run ${record.runId} is enqueued, but deleting old poll runs failed: ${err instanceof Error ? err.message : String(err)}`);
    });
  }
  return record;
}

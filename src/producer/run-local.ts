// All-in-one: enqueue a run, work it with a local worker, wait for every outcome, summarize.
import { Redis } from 'ioredis';
import type { CoreOptionsInput } from '../core/options.js';
import type { TlsProfile } from '../core/tls.js';
import { credentialsHelp, missingProfiles, type CredentialProfiles } from '../fleet/credentials.js';
import type { Operation } from '../fleet/job.js';
import { DEFAULT_PREFIX, QUEUE_NAME } from '../fleet/keys.js';
import type { RunSummary } from '../fleet/outcome.js';
import { RunStore, type RunRecord } from '../fleet/run-store.js';
import type { RetentionPolicy } from '../fleet/retention.js';
import { reportRedisOutages } from '../workers/error-log.js';
import { startWorker } from '../workers/worker.js';
import { BACKGROUND_PRIORITY, enqueueRun } from './enqueue.js';
import type { Inventory } from './inventory.js';
import { waitForRun, type Progress } from './wait.js';
import { openQueue } from '../fleet/queue.js';

export interface LocalRunOptions {
  redisUrl: string;
  prefix?: string;
  inventory: Inventory;
  operation: Operation;
  params?: Record<string, unknown>;
  credentials: CredentialProfiles;
  credentialsFile?: string;
  threads: number;
  concurrency: number;
  timeoutMs?: number;
  jobAttempts?: number;
  jobBackoffMs?: number;
  /** Finished poll runs kept in Redis (older ones are deleted as this one is created). */
  retention?: RetentionPolicy;
  /** BullMQ's finished jobs kept per state (default KEEP_FINISHED_JOBS). */
  keepFinishedJobs?: number;
  coreOptions?: CoreOptionsInput;
  tlsBySite?: Record<string, TlsProfile>;
  onProgress?: (p: Progress) => void;
  /** Enqueue only: the work is left to separate `bos-fleet worker` processes. */
  enqueueOnly?: boolean;
  /**
   * Stops the run early (Ctrl-C): the local worker finishes its in-flight jobs and the rest stay
   * queued for any `bos-fleet worker`; the summary covers the outcomes written so far.
   */
  signal?: AbortSignal;
}

/** Fails before anything is enqueued when the inventory names an unknown credentials profile. */
export function assertProfiles(inventory: Inventory, credentials: CredentialProfiles, file?: string): void {
  assertTargetProfiles(inventory.targets, `inventory ${inventory.file}`, credentials, file);
}

/** The same check for targets that come from elsewhere (a rollback's, read from Redis); `what` names them. */
export function assertTargetProfiles(targets: readonly { credentials: string }[], what: string, credentials: CredentialProfiles, file?: string): void {
  const missing = missingProfiles(targets.map((t) => t.credentials), credentials);
  if (missing.length) {
    throw new Error(`${what}: credentials profile${missing.length > 1 ? 's' : ''} ${missing.map((m) => `"${m}"`).join(', ')} not found: ${credentialsHelp(file)}`);
  }
}

/**
 * Enqueues for separate workers. The passwords may live only on the worker hosts: the profiles are
 * checked here when this process has any (a typo fails before anything is enqueued); without any,
 * a profile no worker knows ends as that miner's INVALID_JOB outcome, naming the profile.
 */
export async function enqueueOnly(opts: LocalRunOptions): Promise<RunRecord> {
  if (opts.credentials.size > 0) assertProfiles(opts.inventory, opts.credentials, opts.credentialsFile);
  return enqueueChecked(opts, true, BACKGROUND_PRIORITY);
}

/**
 * A connection that waits out a Redis outage (ioredis reconnects, commands wait). `report`: it says
 * so, once every 10 s; otherwise this process's worker already does, and this one stays quiet.
 */
function patientRedis(url: string, report: boolean): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: null });
  if (report) reportRedisOutages('bos-fleet', 'nothing enqueued is lost while it is down', [redis]);
  else redis.on('error', () => undefined);
  return redis;
}

/** The enqueue itself, for callers that checked the profiles already. */
async function enqueueChecked(opts: LocalRunOptions, report = false, priority = 0): Promise<RunRecord> {
  const prefix = opts.prefix ?? DEFAULT_PREFIX;
  const redis = patientRedis(opts.redisUrl, report);
  const queue = openQueue(QUEUE_NAME, redis, prefix);
  try {
    return await enqueueRun(queue, new RunStore(redis, prefix), opts.inventory, {
      operation: opts.operation,
      ...(opts.params ? { params: opts.params } : {}),
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.jobAttempts ? { jobAttempts: opts.jobAttempts } : {}),
      ...(opts.jobBackoffMs !== undefined ? { jobBackoffMs: opts.jobBackoffMs } : {}),
      ...(opts.retention ? { retention: opts.retention } : {}),
      ...(opts.keepFinishedJobs ? { keepFinishedJobs: opts.keepFinishedJobs } : {}),
      ...(opts.tlsBySite ? { tlsSites: Object.keys(opts.tlsBySite) } : {}),
      ...(priority ? { priority } : {}),
    });
  } finally {
    await queue.close();
    redis.disconnect();
  }
}

export async function runLocal(opts: LocalRunOptions): Promise<{ record: RunRecord; summary: RunSummary; interrupted: boolean }> {
  assertProfiles(opts.inventory, opts.credentials, opts.credentialsFile);
  const prefix = opts.prefix ?? DEFAULT_PREFIX;
  // The worker is up before the enqueue starts, so it works the first miners while the rest go in.
  const worker = await startWorker({
    redisUrl: opts.redisUrl,
    prefix,
    threads: opts.threads,
    concurrency: opts.concurrency,
    credentials: opts.credentials,
    ...(opts.coreOptions ? { coreOptions: opts.coreOptions } : {}),
    ...(opts.tlsBySite ? { tlsBySite: opts.tlsBySite } : {}),
  });
  const redis = patientRedis(opts.redisUrl, false);
  try {
    const record = await enqueueChecked(opts);
    const store = new RunStore(redis, prefix);
    const progress = await waitForRun(store, record.runId, record.total, {
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    // Interrupted: in-flight jobs finish (their outcomes count below); the rest stay queued.
    if (progress.done < record.total) await worker.close();
    const summary = await store.summarize(record);
    return { record, summary, interrupted: summary.done < record.total };
  } finally {
    await worker.close();
    redis.disconnect();
  }
}

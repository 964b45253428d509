// All-in-one: enqueue a run, work it with a local worker, wait for every outcome, summarize.
import { Redis } from 'ioredis';
import type { CoreOptionsInput } from '../core/options.js';
import type { TlsProfile } from '../core/tls.js';
import { credentialsHelp, missingProfiles, passwordOnlyProfiles, type CredentialProfiles } from '../fleet/credentials.js';
import type { Operation } from '../fleet/job.js';
import { DEFAULT_PREFIX, QUEUE_NAME } from '../fleet/keys.js';
import type { RunSummary } from '../fleet/outcome.js';
import { newRunId, RunStore, type RunRecord } from '../fleet/run-store.js';
import type { RetentionPolicy } from '../fleet/retention.js';
import { reportRedisOutages } from '../workers/error-log.js';
import { startWorker } from '../workers/worker.js';
import { BACKGROUND_PRIORITY, enqueueRun, FOREGROUND_PRIORITY, type EnqueueOptions } from './enqueue.js';
import { lostJobsText, requeueLost } from './lost-jobs.js';
import { leaveToBackground } from './cancel.js';
import { leaveToWorkers } from './run-keeper.js';
import { CONTROL_QUEUE } from '../rollout/control.js';
import type { Inventory } from './inventory.js';
import { waitForRun, type Progress } from './wait.js';
import { openQueue } from '../fleet/queue.js';
import { closeWorker, unlessAborted, type CloseResult } from '../workers/close.js';
import { followFailover } from '../redis/failover.js';

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
   * queued for any `bos-fleet worker`, at the background polls' priority; the summary covers the
   * outcomes written so far.
   */
  signal?: AbortSignal;
  /** How long the run may go without a new outcome before lost jobs are looked for (default STILL_CHECK_MS). */
  stillCheckMs?: number;
}

/** Fails before anything is enqueued when the inventory names an unknown credentials profile, or one with no username. */
export function assertProfiles(inventory: Inventory, credentials: CredentialProfiles, file?: string): void {
  assertTargetProfiles(inventory.targets, `inventory ${inventory.file}`, credentials, file);
}

/** Missing credentials profiles named in full; the rest are counted. */
const MISSING_PROFILES_SHOWN = 5;

/**
 * The same check for targets that come from elsewhere (a rollback's, read from Redis); `what` names
 * them. Each missing profile, or one miners cannot log in with (a pool password only), is named with
 * the miners that use it, so the rows to fix can be found.
 */
export function assertTargetProfiles(targets: readonly { credentials: string; minerId: string }[], what: string, credentials: CredentialProfiles, file?: string): void {
  const missing = missingProfiles(targets.map((t) => t.credentials), credentials);
  if (missing.length) throw new Error(`${what}: credentials profile${missing.length > 1 ? 's' : ''} ${profilesWithMiners(targets, missing)} not found: ${credentialsHelp(file, missing.length)}`);
  const noLogin = passwordOnlyProfiles(targets.map((t) => t.credentials), credentials);
  if (noLogin.length) {
    const one = noLogin.length === 1;
    throw new Error(`${what}: credentials profile${one ? '' : 's'} ${profilesWithMiners(targets, noLogin)} ${one ? 'has' : 'have'} no "username" in ${file ?? 'the credentials'}: ${one ? 'it holds' : 'they hold'} a pool password only (a pools change's passwordRef), and a miner logs in with a username: add ${one ? 'its' : 'their'} "username"`);
  }
}

/** Profiles named with the miners that use them (the rows to fix), bounded: a credentials column filled with each miner's own value must not print every miner. */
function profilesWithMiners(targets: readonly { credentials: string; minerId: string }[], profiles: readonly string[]): string {
  const wanted = new Set(profiles);
  const users = new Map<string, { count: number; first: string[] }>();
  for (const t of targets) {
    if (!wanted.has(t.credentials)) continue;
    const u = users.get(t.credentials) ?? { count: 0, first: [] };
    if (u.count++ < 3) u.first.push(t.minerId);
    users.set(t.credentials, u);
  }
  const named = [...users].slice(0, MISSING_PROFILES_SHOWN).map(([profile, { count, first }]) => `"${profile}" (${count === 1 ? 'miner' : 'miners'} ${first.join(', ')}${count > 3 ? ` and ${(count - 3).toLocaleString('en-US')} more` : ''})`);
  if (wanted.size > MISSING_PROFILES_SHOWN) named.push(`and ${(wanted.size - MISSING_PROFILES_SHOWN).toLocaleString('en-US')} more profiles`);
  return named.join(', ');
}

/**
 * Enqueues for separate workers. The passwords may live only on the worker hosts: the profiles are
 * checked here when this process has any (a typo fails before anything is enqueued); without any,
 * a profile no worker knows ends as that miner's INVALID_JOB outcome, naming the profile.
 */
export async function enqueueOnly(opts: LocalRunOptions): Promise<RunRecord> {
  if (opts.credentials.size > 0) assertProfiles(opts.inventory, opts.credentials, opts.credentialsFile);
  return enqueueChecked(opts, true, BACKGROUND_PRIORITY, undefined, true);
}

/**
 * Leaves a run to the workers, who then put in again any of its jobs Redis loses (run-keeper.ts).
 * The run is enqueued whatever happens here: a failure is said, not thrown.
 */
async function keptByWorkers(redis: Redis, prefix: string, record: RunRecord, opts: LocalRunOptions, priority: number): Promise<void> {
  const control = openQueue(CONTROL_QUEUE, redis, prefix);
  try {
    await leaveToWorkers(new RunStore(redis, prefix), control, record, opts.inventory.targets, enqueueOptions(opts, priority));
  } catch (err) {
    process.stderr.write(
      `bos-fleet: run ${record.runId}: what lets the workers queue again its jobs Redis loses could not be written (${err instanceof Error ? err.message : String(err)}); ` +
        `the run goes on without it: should it never end, \`bos-fleet cancel ${record.runId}\` ends it\n`,
    );
  } finally {
    await control.close();
  }
}

/**
 * A connection that waits out a Redis outage (ioredis reconnects, commands wait). `report`: it says
 * so, once every 10 s; otherwise this process's worker already does, and this one stays quiet.
 */
function patientRedis(url: string, report: boolean): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: null, ...followFailover() });
  if (report) reportRedisOutages('bos-fleet', 'nothing enqueued is lost while it is down', [redis]);
  else redis.on('error', () => undefined);
  return redis;
}

/** How a run of `opts` is enqueued (its jobs' options), at `priority`. */
function enqueueOptions(opts: LocalRunOptions, priority: number): EnqueueOptions {
  return {
    operation: opts.operation,
    ...(opts.params ? { params: opts.params } : {}),
    ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
    ...(opts.jobAttempts ? { jobAttempts: opts.jobAttempts } : {}),
    ...(opts.jobBackoffMs !== undefined ? { jobBackoffMs: opts.jobBackoffMs } : {}),
    ...(opts.retention ? { retention: opts.retention } : {}),
    ...(opts.keepFinishedJobs ? { keepFinishedJobs: opts.keepFinishedJobs } : {}),
    ...(opts.tlsBySite ? { tlsSites: Object.keys(opts.tlsBySite) } : {}),
    ...(priority ? { priority } : {}),
  };
}

/** The enqueue itself, for callers that checked the profiles already; `leave`: the run is left to the workers. */
async function enqueueChecked(opts: LocalRunOptions, report: boolean, priority: number, runId?: string, leave = false): Promise<RunRecord> {
  const prefix = opts.prefix ?? DEFAULT_PREFIX;
  const redis = patientRedis(opts.redisUrl, report);
  const queue = openQueue(QUEUE_NAME, redis, prefix);
  try {
    // Left to the workers: what lets them queue again jobs Redis loses goes in before the jobs.
    const keep = leave ? { beforeJobs: (record: RunRecord) => keptByWorkers(redis, prefix, record, opts, priority) } : {};
    return await enqueueRun(queue, new RunStore(redis, prefix), opts.inventory, { ...enqueueOptions(opts, priority), ...(runId ? { runId } : {}), ...keep });
  } finally {
    await queue.close();
    redis.disconnect();
  }
}

/**
 * A foreground run interrupted while Redis is unreachable or not answering, with no job of its worker in flight: the
 * run, its outcomes so far and its queued jobs are all in Redis, and stay there; its summary cannot be
 * read until Redis is back, and waiting for that is not what an interruption asks for.
 */
export class InterruptedWithoutRedisError extends Error {
  /** The exit code of an interrupted command. */
  readonly exitCode = 130;
  constructor(
    readonly runId: string,
    readonly total: number,
    /** Miners with an outcome at the last read of the run's counts. */
    readonly done: number | undefined,
    /** Interrupted while its jobs were being enqueued: it may hold only some of its miners. */
    readonly enqueuing = false,
  ) {
    super('');
    this.message = this.text('');
  }

  /** What happened and what to do once Redis is back; `where`: the commands' --redis/--prefix flags. */
  text(where: string): string {
    const { runId, total, done } = this;
    if (this.enqueuing) {
      return (
        `interrupted while Redis is unreachable or not answering, with run ${runId} (${total} miners) still being enqueued: it holds none, some or all of its miners. Once Redis is back, ` +
        `\`bos-fleet runs${where}\` lists it if it got in, \`bos-fleet worker${where}\` polls the miners it holds, and \`bos-fleet cancel ${runId}${where}\` ends it (each miner left gets a CANCELLED outcome)`
      );
    }
    const seen = done === undefined ? 'its progress could not be read' : `${done} of ${total} miners had an outcome at the last read`;
    return (
      `interrupted while Redis is unreachable or not answering: run ${runId} stays in Redis as it is (${seen}); once Redis is back, ` +
      `\`bos-fleet results ${runId}${where}\` shows its outcomes and \`bos-fleet worker${where}\` polls the miners left (or \`bos-fleet cancel ${runId}${where}\` drops them)`
    );
  }
}

export async function runLocal(opts: LocalRunOptions): Promise<{ record: RunRecord; summary: RunSummary; interrupted: boolean; workerLeftOpen: boolean }> {
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
  let closed: CloseResult | undefined;
  // Interrupted: in-flight jobs finish (their outcomes count in the summary); the rest stay queued.
  // With Redis down, those in flight wait for it to record their outcomes (said); with none, there is
  // nothing to wait for. A close that gave up is not tried again: it would wait without end.
  const close = async () =>
    (closed ??= await closeWorker(worker, (busy) =>
      process.stderr.write(`bos-fleet: Redis is unreachable or not answering: the ${busy} job${busy === 1 ? '' : 's'} in flight wait for it to record their outcomes (Ctrl-C again to quit now: they run again once their lock expires)\n`),
    ));
  try {
    // Named before it is enqueued: an interruption while Redis is down mid-enqueue can say which run.
    const runId = newRunId();
    const enqueuing = enqueueChecked(opts, false, FOREGROUND_PRIORITY, runId);
    let record = await unlessAborted(enqueuing, opts.signal);
    if (!record) {
      if ((await close()) === 'redis-down') {
        enqueuing.catch(() => undefined); // left behind: it waits for Redis
        throw new InterruptedWithoutRedisError(runId, opts.inventory.targets.length, undefined, true);
      }
      record = await enqueuing; // Redis is there: it ends at once
    }
    const store = new RunStore(redis, prefix);
    const queue = openQueue(QUEUE_NAME, redis, prefix);
    const { runId: id, total } = record;
    const asEnqueued = enqueueOptions(opts, FOREGROUND_PRIORITY);
    // Miners whose jobs Redis lost (a crash of its host, a failover) would never get an outcome: queued again.
    const check = async () => {
      const lost = await requeueLost(queue, store, id, opts.inventory, asEnqueued);
      if (lost) process.stderr.write(`\nbos-fleet: run ${id}: ${lostJobsText(lost, total)}\n`);
    };
    const progress = await waitForRun(store, id, total, {
      ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      ...(opts.signal ? { signal: opts.signal } : {}),
      check,
      ...(opts.stillCheckMs ? { checkAfterMs: opts.stillCheckMs } : {}),
    }).finally(() => queue.close());
    const stoppedEarly = (progress?.done ?? 0) < record.total;
    if (stoppedEarly && (await close()) === 'redis-down') throw new InterruptedWithoutRedisError(record.runId, record.total, progress?.done);
    // The miners left are left to the workers as a background poll (as --enqueue-only leaves one).
    // A dry run drops its reads left instead (cli/dry-run.ts).
    if (stoppedEarly && opts.params?.['dryRun'] !== true) {
      const queue = openQueue(QUEUE_NAME, redis, prefix);
      await leaveToBackground(queue, record.runId).finally(() => queue.close());
      await keptByWorkers(redis, prefix, record, opts, BACKGROUND_PRIORITY);
    }
    const summary = await store.summarize(record);
    await close();
    return { record, summary, interrupted: summary.done < record.total, workerLeftOpen: closed !== 'closed' };
  } finally {
    await close();
    redis.disconnect();
  }
}

// A bos-fleet worker: a BullMQ Worker whose jobs run on an executor (Piscina threads or inline),
// with a breaker table shared by all of its threads. close() drains in-flight jobs first.
import { Worker, type Job, type WorkerOptions as BullWorkerOptions } from 'bullmq';
import { CONTROL_QUEUE, controlStep, createControlProcessor, failRollout } from '../rollout/control.js';
import { isFinalFailure } from '../fleet/job.js';
import { RolloutStore } from '../rollout/store.js';
import { SCHEDULE_QUEUE } from '../rollout/schedules.js';
import { createScheduleProcessor, recordFailedTick } from '../rollout/schedule-ticks.js';
import { Redis } from 'ioredis';
import { createSharedBreakerTable } from '../core/breaker-table.js';
import type { CoreOptionsInput } from '../core/options.js';
import type { TlsProfile } from '../core/tls.js';
import type { CredentialProfiles } from '../fleet/credentials.js';
import { DEFAULT_PREFIX, QUEUE_NAME } from '../fleet/keys.js';
import { RunStore } from '../fleet/run-store.js';
import { createExecutor, type Executor } from './executor.js';
import { createProcessor, settleFailedJob } from './processor.js';
import { createKeeper, KEEP_JOB } from '../producer/run-keeper.js';
import { WorkerRegistry } from './registry.js';
import { watchOrphans } from './hand-on.js';
import { closeHandOnQueues, handOnQueueName } from '../fleet/hand-on-queues.js';
import { errorKind, rateLimitedLog, reportRedisOutages, workerErrorText } from './error-log.js';
import { refusalBrake, type RefusalBrake } from './refusal-brake.js';
import { redisRefusal, redisRefusalAdvice } from '../redis/durability.js';
import { watchStalls } from '../redis/stall.js';
import { roomWatch } from '../redis/maxclients.js';
import { openQueue } from '../fleet/queue.js';
import { followFailover } from '../redis/failover.js';
import { watchLostFetches } from './lost-fetches.js';

export interface WorkerOptions {
  redisUrl: string;
  prefix?: string;
  /** Piscina threads; 0 runs the core in this thread. */
  threads: number;
  /** Jobs in flight in this process. */
  concurrency: number;
  /** BullMQ consumers sharing `concurrency` (default: one per {@link JOBS_PER_CONSUMER} jobs). */
  consumers?: number;
  credentials: CredentialProfiles;
  coreOptions?: CoreOptionsInput;
  tlsBySite?: Record<string, TlsProfile>;
  /** BullMQ lock: a job whose worker died runs again after this (and the stall check). */
  lockDurationMs?: number;
  stalledIntervalMs?: number;
  /** Times a job may stall (its worker died) before BullMQ fails it; it then gets an INTERNAL outcome. */
  maxStalledCount?: number;
  /** How long a rollout's wave may go without a new outcome before its lost jobs are looked for (default STILL_CHECK_MS). */
  stillCheckMs?: number;
  /** How long a job's outcome waits for a Redis refusing writes to take them again (default OUTCOME_REFUSED_WAIT_MS). */
  outcomeRefusedWaitMs?: number;
  /** How long a mutation waits for a rebooted miner to come back. */
  rebootWaitMs?: number;
  /** Called with every miner-job consumer, those started later (hand-on queues) included. */
  onConsumer?: (w: Worker) => void;
}

export interface RunningWorker {
  /** The consumers of the miner-job queue (together `concurrency` jobs in flight). */
  workers: Worker[];
  /** The consumers of this configuration's hand-on queue (sharing the same `concurrency`). */
  handOnConsumers: Worker[];
  control: Worker;
  executor: Executor;
  /** Jobs being processed now (miner jobs, rollout steps, schedule ticks). */
  busy(): number;
  /** Whether its Redis connections are up and Redis answers them (not stalled: see redis/stall.ts). */
  redisReachable(): boolean;
  /** How long Redis has left its probe unanswered on a connection that is up (0: it answers). */
  redisUnansweredMs(): number;
  close(): Promise<void>;
}

export const DEFAULT_THREADS = 0;
export const DEFAULT_CONCURRENCY = 200;
/** Upper bounds of the CLI's flags: beyond them a process runs out of descriptors or memory, not faster. */
export const MAX_THREADS = 256;
export const MAX_CONCURRENCY = 10_000;
export const MAX_CONSUMERS = 1_000;

/**
 * Jobs one BullMQ consumer holds at most. A BullMQ Worker fetches jobs one Redis round trip after
 * another and hands them to its processor only when its slots are full or the queue is empty: one
 * consumer of 200 leaves the executor waiting ~200 round trips at the start of every run. Several
 * smaller consumers fill their slots side by side (each fetch re-adds the queue's marker, which wakes
 * the next blocked consumer).
 */
export const JOBS_PER_CONSUMER = 25;

/** Runs at most `n` tasks at once; the others wait their turn, first come first served. */
export function slotLimit(n: number): { run<T>(task: () => Promise<T>): Promise<T> } {
  let active = 0;
  const waiting: (() => void)[] = [];
  return {
    async run(task) {
      if (active < n) active++;
      else await new Promise<void>((resolve) => waiting.push(resolve)); // the finishing task hands its slot over
      try {
        return await task();
      } finally {
        const next = waiting.shift();
        if (next) next();
        else active--;
      }
    },
  };
}

/** `concurrency` split over consumers: as even as possible, summing to `concurrency`. */
export function consumerSlots(concurrency: number, consumers = Math.ceil(concurrency / JOBS_PER_CONSUMER)): number[] {
  const n = Math.max(1, Math.min(consumers, concurrency));
  return Array.from({ length: n }, (_, i) => Math.floor(concurrency / n) + (i < concurrency % n ? 1 : 0));
}

export async function startWorker(opts: WorkerOptions): Promise<RunningWorker> {
  const prefix = opts.prefix ?? DEFAULT_PREFIX;
  // Each follows a failover by itself, as each consumer's duplicate does.
  const connection = new Redis(opts.redisUrl, { maxRetriesPerRequest: null, ...followFailover() });
  const storeRedis = new Redis(opts.redisUrl, { maxRetriesPerRequest: null, ...followFailover() });
  reportRedisOutages('worker', 'no job is lost while it is down', [connection, storeRedis]);
  const stall = watchStalls(storeRedis, 'worker', 'jobs in flight wait for it to record their outcomes, and no job is lost');
  const executor = createExecutor(
    {
      coreOptions: opts.coreOptions ?? {},
      breakerTable: createSharedBreakerTable(),
      credentials: [...opts.credentials.entries()],
      ...(opts.tlsBySite ? { tlsBySite: opts.tlsBySite } : {}),
      ...(opts.rebootWaitMs ? { rebootWaitMs: opts.rebootWaitMs } : {}),
    },
    opts.threads,
    opts.concurrency,
  );
  const rollouts = new RolloutStore(storeRedis, prefix);
  const connections: Redis[] = [];
  const brakes: RefusalBrake[] = [];
  // One line for all consumers each time Redis refuses writes anew, then at most every 30 s.
  const refusalLog = rateLimitedLog((line) => console.error(`worker: ${line}`), 30_000, Date.now, () => 'refused');
  let busy = 0;
  const queueLogs = new Map<string, (line: string) => void>();
  // Jobs fetched for a consumer in a reply lost with its connection go back to the queue (lost-fetches.ts).
  const lostFetches = watchLostFetches((queue, line) => queueLogs.get(queue)?.(line));
  const room = roomWatch(storeRedis, (line) => console.error(`worker: ${line}`));
  // Each BullMQ Worker gets its own blocking connection; every one is closed by close().
  const consume = <D, R>(queue: string, processor: (job: Job<D>, token?: string) => Promise<R>, concurrency: number, extra: Partial<BullWorkerOptions> = {}) => {
    const conn = connections.length === 0 ? connection : connection.duplicate(followFailover());
    conn.on('error', () => room.check());
    connections.push(conn);
    const counted = async (job: Job<D>, token?: string): Promise<R> => {
      busy++;
      try {
        return await processor(job, token);
      } finally {
        busy--;
      }
    };
    const w = new Worker<D, R>(queue, counted, {
      connection: conn,
      prefix,
      concurrency,
      lockDuration: opts.lockDurationMs ?? 30_000,
      stalledInterval: opts.stalledIntervalMs ?? 30_000,
      ...extra,
    });
    // One log per queue for all of its consumers: a freeze past the locks is one line with a count, not one per consumer.
    let log = queueLogs.get(queue);
    if (!log) queueLogs.set(queue, (log = rateLimitedLog((line) => console.error(`worker (${queue}): ${line}`))));
    const brake = refusalBrake(w, {
      onHold: (ms, message) => refusalLog(`Redis refuses ${redisRefusal(message) === 'NOPERM' ? "this user's commands" : 'writes'} (${errorKind(message)}): taking no new jobs for ${ms / 1000} s, then trying again, longer while it refuses (jobs in flight end once it takes writes; none is lost). ${redisRefusalAdvice(message)}`),
    });
    brakes.push(brake);
    lostFetches.add(w, conn);
    w.on('error', (err) => {
      if (brake.onError(err)) return; // said by the brake.s line
      const line = workerErrorText(err);
      if (line !== undefined) log(line);
      else room.check(); // a connection that drops, or never opens: Redis may have no room for it
    });
    return w;
  };
  const registry = new WorkerRegistry(storeRedis, prefix, { profiles: [...opts.credentials.keys()], tlsSites: Object.keys(opts.tlsBySite ?? {}) }, { concurrency: opts.concurrency, threads: opts.threads });
  await registry.start();
  const store = new RunStore(storeRedis, prefix);
  const jobsQueue = openQueue(QUEUE_NAME, storeRedis, prefix);
  let closing: Promise<void> | undefined;
  // One budget of `concurrency` jobs for the run queue and the hand-on queues together.
  const slots = slotLimit(opts.concurrency);
  const takenOver = rateLimitedLog((line) => console.error(`worker: ${line}`));
  const processJob = createProcessor({ store, executor, rollouts, registry, jobs: jobsQueue, notice: takenOver, ...(opts.outcomeRefusedWaitMs !== undefined ? { outcomeRefusedWaitMs: opts.outcomeRefusedWaitMs } : {}) });
  const processor = (job: Job, token?: string) => slots.run(() => processJob(job, token));
  const unwritten = rateLimitedLog((line) => console.error(`worker: ${line}`));
  const minerConsumers = (queue: string, split: number[]) =>
    split.map((n) => {
      const w = consume(queue, processor, n, { maxStalledCount: opts.maxStalledCount ?? 5 });
      w.on('failed', (job, err) => {
        settleFailedJob(store, job, err, opts.outcomeRefusedWaitMs).catch((e: unknown) => unwritten(`a failed job's outcome could not be written: ${e instanceof Error ? e.message : String(e)}`));
      });
      opts.onConsumer?.(w);
      return w;
    });
  const split = consumerSlots(opts.concurrency, opts.consumers);
  const workers = minerConsumers(QUEUE_NAME, split);
  // This configuration's hand-on queue (jobs other workers could not do) is consumed from the first
  // time a job is handed on to it: workers all configured alike never use one.
  const handOnConsumers: Worker[] = [];
  const orphans = watchOrphans({
    redis: storeRedis,
    k: store.k,
    main: jobsQueue,
    own: registry.signature,
    ownQueueUsed: () => {
      if (handOnConsumers.length === 0 && !closing) handOnConsumers.push(...minerConsumers(handOnQueueName(registry.signature), split));
    },
    liveSignatures: () => registry.liveSignatures(),
    consume: (queue) => minerConsumers(queue, [JOBS_PER_CONSUMER])[0]!,
  });
  // Rollout control jobs (wave starts, failure gates) and schedule ticks run in every worker
  // process; BullMQ hands each job to exactly one of them.
  const controlQueue = openQueue(CONTROL_QUEUE, storeRedis, prefix);
  const still = opts.stillCheckMs ? { stillCheckMs: opts.stillCheckMs } : {};
  const rolloutStep = createControlProcessor({ redis: storeRedis, prefix, jobs: jobsQueue, control: controlQueue, ...still });
  // And the looks at poll runs left to the workers (producer/run-keeper.ts).
  const keepRun = createKeeper({ store, jobs: jobsQueue, control: controlQueue, ...still });
  const control = consume(CONTROL_QUEUE, (job: Job, token?: string) => (job.name === KEEP_JOB ? keepRun(job) : rolloutStep(job, token)), 4);
  const rolloutLog = rateLimitedLog((line) => console.error(`worker: ${line}`));
  control.on('failed', (job, err) => {
    if (!job) return;
    const final = isFinalFailure(job, err);
    if (job.name === KEEP_JOB) return rolloutLog(`run ${job.data.runId}: a look for its lost jobs failed: ${err.message}${final ? ' (no more looks: `bos-fleet cancel` ends the run if it never does)' : ', tried again'}`);
    rolloutLog(`rollout ${job.data.rolloutId}: ${controlStep(job)}: ${err.message} (attempt ${job.attemptsMade} of ${job.opts.attempts ?? 1}${final ? ': the rollout fails' : ', tried again'})`);
    if (final) failRollout(storeRedis, prefix, job, err).catch((e: unknown) => unwritten(`a failed rollout step could not be recorded: ${e instanceof Error ? e.message : String(e)}`));
  });
  const schedules = consume(SCHEDULE_QUEUE, createScheduleProcessor({ redis: storeRedis, prefix, jobs: jobsQueue, control: controlQueue }), 2);
  schedules.on('failed', (job, err) => {
    recordFailedTick(storeRedis, prefix, job, err).catch((e: unknown) => unwritten(`a failed schedule tick could not be recorded: ${e instanceof Error ? e.message : String(e)}`));
  });
  return {
    workers,
    handOnConsumers,
    control,
    executor,
    busy: () => busy,
    redisReachable: () => storeRedis.status === 'ready' && connection.status === 'ready' && !stall.stalled(),
    redisUnansweredMs: () => stall.unansweredMs(),
    close: () =>
      (closing ??= (async () => {
        for (const b of brakes) b.stop();
        lostFetches.stop();
        room.stop();
        // Every consumer stops taking jobs at once: one whose close waits on Redis (or hangs after an
        // outage, taskforcesh/bullmq #4656) must not leave the others fetching new jobs meanwhile.
        await Promise.all([...[schedules, control, ...workers, ...handOnConsumers].map((w) => w.close()), orphans.stop()]);
        await closeHandOnQueues(jobsQueue);
        await jobsQueue.close();
        await controlQueue.close();
        await executor.close();
        await registry.stop();
        for (const c of connections) c.disconnect();
        stall.stop();
        storeRedis.disconnect();
      })()),
  };
}

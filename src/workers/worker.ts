// A bos-fleet worker: a BullMQ Worker whose jobs run on an executor (Piscina threads or inline),
// with a breaker table shared by all of its threads. close() drains in-flight jobs first.
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { createSharedBreakerTable } from '../core/breaker-store.js';
import type { CoreOptionsInput } from '../core/options.js';
import type { TlsProfile } from '../core/tls.js';
import type { CredentialProfiles } from '../fleet/credentials.js';
import { DEFAULT_PREFIX, QUEUE_NAME } from '../fleet/keys.js';
import { RunStore } from '../fleet/run-store.js';
import { createExecutor, type Executor } from './executor.js';
import { createProcessor } from './processor.js';

export interface WorkerOptions {
  redisUrl: string;
  prefix?: string;
  /** Piscina threads; 0 runs the core in this thread. */
  threads: number;
  /** Jobs in flight in this process. */
  concurrency: number;
  credentials: CredentialProfiles;
  coreOptions?: CoreOptionsInput;
  tlsBySite?: Record<string, TlsProfile>;
  /** BullMQ lock: a job whose worker died runs again after this (and the stall check). */
  lockDurationMs?: number;
  stalledIntervalMs?: number;
}

export interface RunningWorker {
  worker: Worker;
  executor: Executor;
  close(): Promise<void>;
}

export const DEFAULT_THREADS = 0;
export const DEFAULT_CONCURRENCY = 200;

export async function startWorker(opts: WorkerOptions): Promise<RunningWorker> {
  const prefix = opts.prefix ?? DEFAULT_PREFIX;
  const connection = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
  const storeRedis = new Redis(opts.redisUrl, { maxRetriesPerRequest: null });
  connection.on('error', () => undefined); // reconnects on its own; BullMQ reports via 'error'
  storeRedis.on('error', () => undefined);
  const executor = createExecutor(
    {
      coreOptions: opts.coreOptions ?? {},
      breakerTable: createSharedBreakerTable(),
      credentials: [...opts.credentials.entries()],
      ...(opts.tlsBySite ? { tlsBySite: opts.tlsBySite } : {}),
    },
    opts.threads,
    opts.concurrency,
  );
  const worker = new Worker(QUEUE_NAME, createProcessor({ store: new RunStore(storeRedis, prefix), executor }), {
    connection,
    prefix,
    concurrency: opts.concurrency,
    lockDuration: opts.lockDurationMs ?? 30_000,
    stalledInterval: opts.stalledIntervalMs ?? 30_000,
    maxStalledCount: 5,
  });
  worker.on('error', (err) => {
    if (!/ECONNREFUSED|Connection is closed|ECONNRESET/.test(String(err))) console.error(`worker: ${err.message}`);
  });
  let closing: Promise<void> | undefined;
  return {
    worker,
    executor,
    close: () =>
      (closing ??= (async () => {
        await worker.close();
        await executor.close();
        connection.disconnect();
        storeRedis.disconnect();
      })()),
  };
}

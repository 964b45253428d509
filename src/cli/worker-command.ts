// `bos-fleet worker`: a long-running worker process; several may run on several hosts.
import type { Command } from 'commander';
import { DEFAULT_PREFIX, QUEUE_NAME } from '../fleet/keys.js';
import { loadCredentialProfiles } from '../fleet/credentials.js';
import { DEFAULT_CONCURRENCY, DEFAULT_THREADS, JOBS_PER_CONSUMER, startWorker, MAX_CONCURRENCY, MAX_THREADS, MAX_CONSUMERS } from '../workers/worker.js';
import { closeWorker } from '../workers/close.js';
import { activityText, totalOutcomes, watchActivity } from '../workers/activity.js';
import { listWorkers, type WorkerCapabilities, type WorkerInfo } from '../workers/registry.js';
import { closeHandOnQueues, handOnQueueName, handOnQueues } from '../fleet/hand-on-queues.js';
import { parseDurationMs } from '../fleet/ids-and-durations.js';
import { fitDescriptors, interruptible, loadTlsSites } from './common.js';
import { connectRedis } from './connect-redis.js';
import { shownRedisUrl } from '../redis/resolve.js';
import { DEFAULT_MAX_CONNECTIONS, DEFAULT_RECEIVE_BYTES, MAX_RECEIVE_BYTES, MIN_RECEIVE_BYTES } from '../core/options.js';
import { intInRange, positiveInt, prefixOption } from './parse.js';
import { Redis } from 'ioredis';
import { redisHealthProblems } from '../redis/durability.js';
import { rateLimitedLog } from '../workers/error-log.js';
import { columns } from './render.js';
import { openQueue } from '../fleet/queue.js';

const caps = (w: WorkerCapabilities) => `${w.profiles.join(',') || '-'} / ${w.tlsSites.join(',') || '-'}`;

/** A line per hand-on queue with jobs in it: how many wait there, and for which workers. */
async function handedOnBacklog(redis: Redis, prefix: string, workers: WorkerInfo[]): Promise<string[]> {
  const queue = openQueue(QUEUE_NAME, redis, prefix);
  try {
    const lines: string[] = [];
    for (const q of await handOnQueues(queue)) {
      const c = await q.getJobCounts('waiting', 'prioritized', 'active', 'delayed');
      const waiting = (c['waiting'] ?? 0) + (c['prioritized'] ?? 0);
      if (waiting + (c['active'] ?? 0) + (c['delayed'] ?? 0) === 0) continue;
      const owner = workers.find((w) => w.signature && handOnQueueName(w.signature) === q.name);
      const whose = owner ? `workers with ${caps(owner)}` : 'a configuration no running worker has (the other workers take them over)';
      lines.push(`handed on to ${whose}: ${waiting} waiting, ${c['active'] ?? 0} running, ${c['delayed'] ?? 0} delayed (queue ${q.name})`);
    }
    return lines;
  } finally {
    await closeHandOnQueues(queue);
    await queue.close();
  }
}

/** How often a running worker looks at Redis's memory and persistence (at most). */
const HEALTH_EVERY_MS = 60_000;

function watchRedisHealth(url: string, everyMs: number): { stop(): void } {
  const redis = new Redis(url, { maxRetriesPerRequest: null, lazyConnect: true });
  redis.on('error', () => undefined); // the worker's own connections report Redis being down
  // Alike when they differ only in figures (Redis 85% full, then 86%).
  const warn = rateLimitedLog((line) => process.stderr.write(`worker: WARNING: ${line}\n`), 600_000, Date.now, (m) => m.replace(/[\d.,]+/g, '#'));
  let checking = false;
  const timer = setInterval(() => {
    if (checking) return;
    checking = true;
    void (async () => {
      for (const problem of await redisHealthProblems(redis)) warn(problem);
    })()
      .catch(() => undefined)
      .finally(() => (checking = false));
  }, everyMs);
  timer.unref();
  return {
    stop: () => {
      clearInterval(timer);
      redis.disconnect();
    },
  };
}

/** The longest --report-every: a report a day. */
const MAX_REPORT_EVERY_MS = 86_400_000;

export function registerWorker(program: Command): void {
  program
    .command('worker')
    .description('work queued jobs until SIGTERM / SIGINT / SIGHUP (in-flight jobs finish first; none is lost)')
    .option('--redis <url>', 'Redis URL (default: REDIS_URL, else the embedded redis-server)')
    .option('--threads <n>', 'worker threads running the gRPC core (0 = in the main thread)', intInRange('--threads', 0, MAX_THREADS), DEFAULT_THREADS)
    .option('--concurrency <n>', 'jobs in flight at once', intInRange('--concurrency', 1, MAX_CONCURRENCY), DEFAULT_CONCURRENCY)
    .option('--consumers <n>', `BullMQ consumers sharing --concurrency (default: one per ${JOBS_PER_CONSUMER} jobs)`, intInRange('--consumers', 1, MAX_CONSUMERS))
    .option('--credentials <file>', 'credential profiles JSON (default profile also from BOS_FLEET_USERNAME / BOS_FLEET_PASSWORD); read at start: restart the worker after changing it')
    .option('--tls <file>', 'TLS per site: JSON {"site or *": {"caFile", "certFile"?, "keyFile"?, "serverName"?}}')
    .option('--max-connections <n>', 'miner channels kept open per thread between polls (least recently used idle ones closed beyond, never one a call is using; keep threads × n under the fd limit)', positiveInt('--max-connections'), DEFAULT_MAX_CONNECTIONS)
    .option('--max-receive-bytes <n>', `largest miner reply accepted, bytes (default ${DEFAULT_RECEIVE_BYTES}; at most ${MAX_RECEIVE_BYTES})`, intInRange('--max-receive-bytes', MIN_RECEIVE_BYTES, MAX_RECEIVE_BYTES))
    // Below 1 s, locks would run out between their renewals (and a change's write window with them); above an hour, a dead worker's miners wait that long.
    .option('--lock-ms <n>', 'BullMQ job lock: a job of a dead worker is re-run after about this long (1000 to 3600000)', intInRange('--lock-ms', 1_000, 3_600_000), 30_000)
    .option('--allow-volatile-redis', 'run even if Redis has appendonly no or evicts keys (jobs may be lost)')
    .option('--prefix <prefix>', 'Redis key prefix (one per farm sharing a Redis)', prefixOption, DEFAULT_PREFIX)
    .option('--report-every <duration>', 'log what was done this often, when anything was (0 = only at exit)', '60s')
    .action(async (opts: { redis?: string; threads: number; concurrency: number; consumers?: number; credentials?: string; tls?: string; lockMs: number; maxConnections: number; maxReceiveBytes?: number; allowVolatileRedis?: boolean; prefix: string; reportEvery: string }) => {
      const reportEveryMs = parseDurationMs(opts.reportEvery, '--report-every', { example: '60s or 5m' });
      // Past 24.8 days a Node interval overflows and fires every millisecond: a line per ms in the log.
      if (reportEveryMs > MAX_REPORT_EVERY_MS) throw new Error(`--report-every must be at most 1d (0 = only at exit), got "${opts.reportEvery}"`);
      const credentials = loadCredentialProfiles(opts.credentials);
      if (credentials.size === 0) {
        process.stderr.write('bos-fleet: WARNING: no credential profiles (pass --credentials FILE or set BOS_FLEET_USERNAME): this worker hands every job to workers that have their profiles, and one that no running worker has ends INVALID_JOB\n');
      }
      const tlsBySite = loadTlsSites(opts.tls);
      const fds = fitDescriptors({ threads: opts.threads, maxConnections: opts.maxConnections, concurrency: opts.concurrency, ...(opts.consumers ? { consumers: opts.consumers } : {}) });
      if (fds.warning) process.stderr.write(`bos-fleet: WARNING: ${fds.warning}\n`);
      const { url, redis } = await connectRedis(opts.redis, { refuseVolatile: true, allowVolatile: opts.allowVolatileRedis ?? false });
      redis.disconnect();
      const activity = watchActivity();
      // SIGTERM, SIGINT, a hang-up (an ssh session dropped) or its output going away: it stops
      // cleanly instead of being killed with jobs in flight (its writes to an output that is gone
      // fail quietly: main.ts). Listened for before the consumers start and the start-up line is
      // out: a stop sent as soon as that line shows (a service manager's, a script's) used to find
      // no handler yet now and then, and killed the worker by SIGTERM.
      const stop = interruptible('finishing in-flight jobs…', (reason) => console.log(`worker: ${reason}, finishing in-flight jobs…`));
      const running = await startWorker({
        onConsumer: activity.attach,
        redisUrl: url,
        prefix: opts.prefix,
        threads: opts.threads,
        concurrency: fds.concurrency,
        consumers: opts.consumers,
        credentials,
        coreOptions: { pool: { maxConnections: fds.maxConnections }, ...(opts.maxReceiveBytes ? { maxReceiveBytes: opts.maxReceiveBytes } : {}) },
        lockDurationMs: opts.lockMs,
        stalledIntervalMs: Math.max(1_000, Math.floor(opts.lockMs / 2)),
        ...(tlsBySite ? { tlsBySite } : {}),
      });
      console.log(`worker: ${process.pid} on ${shownRedisUrl(url)}, threads ${opts.threads}, concurrency ${fds.concurrency} over ${running.workers.length} consumer(s)`);
      const report = reportEveryMs > 0 ? setInterval(() => {
        const a = activity.take();
        if (totalOutcomes(a) || a.retries || a.handedOn) console.log(`worker: last ${opts.reportEvery}: ${activityText(a)}`);
      }, reportEveryMs) : undefined;
      // Redis filling up or unable to save is said while it happens, not only at start-up (each kind
      // at most every 10 minutes), so the worker's log warns before runs are refused.
      const health = watchRedisHealth(url, Math.min(reportEveryMs || HEALTH_EVERY_MS, HEALTH_EVERY_MS));
      if (!stop.signal.aborted) await new Promise<void>((resolve) => stop.signal.addEventListener('abort', () => resolve(), { once: true }));
      const closed = await closeWorker(running, (busy) =>
        console.log(`worker: Redis is unreachable or not answering: the ${busy} job${busy === 1 ? '' : 's'} in flight wait for it to record their outcomes (SIGTERM again to quit now: they run again elsewhere once their lock expires)`),
      );
      if (closed !== 'closed') {
        console.log(
          closed === 'redis-down'
            ? 'worker: Redis is unreachable or not answering, and no job is in flight: stopped without it (its registration expires by itself)'
            : 'worker: its jobs are done, but its queue connections did not close after the Redis outage: stopped without them',
        );
        process.exit(0);
      }
      health.stop();
      if (report) clearInterval(report);
      console.log(`worker: stopped after ${activityText(activity.total())}`);
    });

  program
    .command('workers')
    .description('the bos-fleet workers running on this Redis: host, pid, concurrency, the profiles and TLS sites they have')
    .option('--redis <url>', 'Redis URL (default: REDIS_URL, else the embedded redis-server)')
    .option('--json', 'print JSON')
    .option('--prefix <prefix>', 'Redis key prefix', prefixOption, DEFAULT_PREFIX)
    .action(async (opts: { redis?: string; json?: boolean; prefix: string }) => {
      const { redis } = await connectRedis(opts.redis);
      try {
        const workers = (await listWorkers(redis, opts.prefix)).sort((a, b) => a.host.localeCompare(b.host) || a.pid - b.pid);
        if (opts.json) return console.log(JSON.stringify(workers, null, 2));
        if (workers.length === 0) console.log('no worker running (start one with `bos-fleet worker`)');
        else {
          const table = workers.map((w) => [w.host, String(w.pid), String(w.concurrency), String(w.threads), w.startedAt, caps(w)]);
          for (const line of columns([['HOST', 'PID', 'CONC', 'THR', 'STARTED', 'PROFILES / TLS SITES'], ...table], [1, 2, 3])) console.log(line);
        }
        for (const line of await handedOnBacklog(redis, opts.prefix, workers)) console.log(line);
      } finally {
        redis.disconnect();
      }
    });
}

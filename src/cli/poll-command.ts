// `bos-fleet poll`: poll every miner of an inventory and report a typed outcome for each.
import type { Command } from 'commander';
import { DEFAULT_PREFIX } from '../fleet/keys.js';
import { loadCredentialProfiles } from '../fleet/credentials.js';
import { enqueueOnly, InterruptedWithoutRedisError, runLocal } from '../producer/run-local.js';
import { DEFAULT_CONCURRENCY, DEFAULT_THREADS, MAX_CONCURRENCY, MAX_THREADS } from '../workers/worker.js';
import { localPoolOptions, interruptible, loadSelected, loadTlsSites, retentionFrom, retentionOptions, selectionOptions, whereFlags, type RetentionFlags, type SelectionFlags } from './common.js';
import { connectRedis } from './connect-redis.js';
import { DEFAULT_RECEIVE_BYTES, MAX_RECEIVE_BYTES, MIN_RECEIVE_BYTES } from '../core/options.js';
import { intInRange, timeoutMsOption, prefixOption } from './parse.js';
import { progressRenderer, summaryText } from './render.js';
import { listWorkers, workersWarning } from '../workers/registry.js';
import { exitNow } from './hang-up.js';

export interface PollCliOptions extends RetentionFlags, SelectionFlags {
  credentials?: string;
  redis?: string;
  concurrency: number;
  threads: number;
  timeoutMs?: number;
  maxReceiveBytes?: number;
  json?: boolean;
  enqueueOnly?: boolean;
  tls?: string;
  prefix: string;
}

export function registerPoll(program: Command): void {
  const poll = program
    .command('poll')
    .description('poll every miner of an inventory: status, hashrate, power, temperatures, pools, errors')
    .requiredOption('--inventory <file>', 'inventory CSV (header row) or JSON: id, host, port, site, tags, credentials')
    .option('--credentials <file>', 'credential profiles JSON {"profile": {"username", "password"}} (default profile also from BOS_FLEET_USERNAME / BOS_FLEET_PASSWORD)')
    .option('--redis <url>', 'Redis URL (default: REDIS_URL, else an embedded redis-server)')
    .option('--concurrency <n>', 'jobs in flight at once', intInRange('--concurrency', 1, MAX_CONCURRENCY), DEFAULT_CONCURRENCY)
    .option('--threads <n>', 'worker threads running the gRPC core (0 = in the main thread)', intInRange('--threads', 0, MAX_THREADS), DEFAULT_THREADS)
    .option('--timeout-ms <n>', 'deadline of each call attempt, connect included (default: 5000; 100 to 600000)', timeoutMsOption)
    .option('--max-receive-bytes <n>', `largest miner reply accepted, bytes (default ${DEFAULT_RECEIVE_BYTES}; at most ${MAX_RECEIVE_BYTES})`, intInRange('--max-receive-bytes', MIN_RECEIVE_BYTES, MAX_RECEIVE_BYTES))
    .option('--tls <file>', 'TLS per site: JSON {"site or *": {"caFile", "certFile"?, "keyFile"?, "serverName"?}}; those sites are polled over TLS only, by any worker')
    .option('--json', 'print one JSON object {runId, total, counts, durationMs}')
    .option('--prefix <prefix>', 'Redis key prefix (one per farm sharing a Redis)', prefixOption, DEFAULT_PREFIX)
    .option('--enqueue-only', 'enqueue the jobs, print the run id, and leave the work to `bos-fleet worker` processes (which also queue again any of its jobs Redis loses)');
  retentionOptions(selectionOptions(poll), 'of `bos-fleet poll` (not of schedules)').action(async (opts: PollCliOptions) => {
    if (opts.enqueueOnly && opts.maxReceiveBytes !== undefined) {
      throw new Error('--max-receive-bytes is a setting of the workers that poll: with --enqueue-only, pass it to `bos-fleet worker`');
    }
    const retention = retentionFrom(opts);
    const inventory = loadSelected(opts);
    const credentials = loadCredentialProfiles(opts.credentials);
    const tlsBySite = loadTlsSites(opts.tls);
    // The worker this command runs itself fits the open-files limit (an --enqueue-only run has none).
    const local = opts.enqueueOnly ? { concurrency: opts.concurrency, coreOptions: {} } : localPoolOptions(opts.threads, opts.concurrency);
    const { url, redis } = await connectRedis(opts.redis);
    if (!opts.enqueueOnly) redis.disconnect();
    const common = {
      redisUrl: url,
      prefix: opts.prefix,
      inventory,
      operation: 'poll' as const,
      credentials,
      ...(opts.credentials ? { credentialsFile: opts.credentials } : {}),
      threads: opts.threads,
      concurrency: local.concurrency,
      ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      ...(tlsBySite ? { tlsBySite } : {}),
      coreOptions: { ...(opts.maxReceiveBytes ? { maxReceiveBytes: opts.maxReceiveBytes } : {}), ...local.coreOptions },
      ...(retention ? { retention } : {}),
    };
    if (opts.enqueueOnly) {
      try {
        const record = await enqueueOnly(common);
        console.log(opts.json ? JSON.stringify({ runId: record.runId, total: record.total }) : record.runId);
        const warning = workersWarning(await listWorkers(redis, opts.prefix), inventory.targets, Object.keys(tlsBySite ?? {}), 'the jobs wait');
        if (warning) process.stderr.write(`bos-fleet: WARNING: ${warning}\n`);
      } finally {
        redis.disconnect();
      }
      return;
    }
    const bar = opts.json ? undefined : progressRenderer();
    const started = Date.now();
    const stop = interruptible('stopping: the jobs in flight finish, the rest stay queued');
    const { record, summary, interrupted, workerLeftOpen } = await runLocal({ ...common, signal: stop.signal, ...(bar ? { onProgress: (p) => bar.update(p) } : {}) })
      .catch((err: unknown) => {
        if (!(err instanceof InterruptedWithoutRedisError)) throw err;
        bar?.done();
        process.stderr.write(`bos-fleet: ${err.text(whereFlags(opts))}\n`);
        exitNow(err.exitCode); // its Redis connections would wait for Redis without end
        return new Promise<never>(() => undefined);
      })
      .finally(() => stop.dispose());
    bar?.done();
    if (opts.json) {
      console.log(JSON.stringify({ runId: record.runId, total: record.total, counts: summary.counts, durationMs: Date.now() - started }));
    } else {
      console.log(summaryText(record, summary));
      console.log(`\ndetails: bos-fleet results ${record.runId}${whereFlags(opts)} [--failed] [--format table|json|csv]`);
    }
    if (interrupted) {
      const left = record.total - summary.done;
      process.stderr.write(`bos-fleet: interrupted: ${left} of ${record.total} miners not polled; their jobs stay queued in Redis, behind rollouts and foreground polls as a background poll's do, and \`bos-fleet worker\` polls them (\`bos-fleet runs\` shows the run's progress), or \`bos-fleet cancel ${record.runId}\` drops them\n`);
      process.exitCode = 130;
    }
    // Its worker's queue connections never closed after a Redis outage (closeWorker): they hold none of its jobs.
    if (workerLeftOpen) exitNow(Number(process.exitCode ?? 0));
  });
}

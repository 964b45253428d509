// One benchmark mode in its own process (so its RSS is its own): prints one JSON result line.
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { DEFAULT_PREFIX, QUEUE_NAME } from '../fleet/keys.js';
import { RunStore } from '../fleet/run-store.js';
import { SummaryBuilder } from '../fleet/outcome.js';
import { enqueueRun, FOREGROUND_PRIORITY } from '../producer/enqueue.js';
import { parseInventory } from '../producer/inventory.js';
import { waitForRun } from '../producer/wait.js';
import { SIM_PASSWORD, SIM_USERNAME } from '../sim/miner.js';
import { inventoryCsv } from '../sim/plan.js';
import { startWorker } from '../workers/worker.js';
import { pollMiner } from '../workers/ops/poll.js';
import { FleetCore } from '../core/fleet-core.js';
import { barePoll, naivePoll, type BareSession, type BareTarget } from './bare-clients.js';
import { collapseSteady } from './ratios.js';
import { forEachLimited, result, rssSampler, watchedCpu, type ModeResult, type WatchedPids } from './measure.js';
import { openQueue } from '../fleet/queue.js';

export interface ModeConfig {
  mode: 'pipeline' | 'core' | 'bare' | 'naive' | 'naive-own';
  label: string;
  redisUrl: string;
  targets: (BareTarget & { id: string })[];
  concurrency: number;
  threads: number;
  timeoutMs: number;
  /**
   * Polls the whole fleet this many times in one process: the pipeline with one long-running worker
   * (channels, tokens, API versions and breakers carry over), the core with one FleetCore, the bare
   * client with its kept-open channels and the token and version it already read.
   */
  repeat: number;
  /** Names of the repeated polls in result labels (e.g. cold, warm); `#1`, `#2`, … otherwise. */
  phases?: string[];
  /**
   * Polls after the `repeat` ones, in the same process, reported as one `steady` result: the one of
   * median time (a long-running process's regular poll, its code compiled and its heap grown).
   */
  steady?: number;
  /** Redis and the simulator: their CPU is measured per run, like the executor's. */
  watch?: WatchedPids;
}

function phaseLabel(cfg: ModeConfig, i: number): string {
  const name = i >= cfg.repeat ? 'steady' : (cfg.phases?.[i] ?? (cfg.repeat > 1 ? `#${i + 1}` : ''));
  return name ? `${cfg.label} ${name}` : cfg.label;
}

const pollsOf = (cfg: ModeConfig) => cfg.repeat + (cfg.steady ?? 0);

const creds = { username: SIM_USERNAME, password: SIM_PASSWORD };

/**
 * The pool size the benchmark runs with (`bos-fleet worker --max-connections`): every miner's channel
 * kept open up to 16,384 (under the 20,000 fd limit), 8,192 for larger fleets (which then reconnect
 * on each poll: a least-recently-used pool cycled in order keeps none).
 */
function maxConnectionsFor(n: number): number {
  return n <= 16_384 ? 16_384 : 8_192;
}

async function pipeline(cfg: ModeConfig): Promise<ModeResult[]> {
  const prefix = `${DEFAULT_PREFIX.slice(0, -1)}-bench-${process.pid}}`;
  const redis = new Redis(cfg.redisUrl, { maxRetriesPerRequest: null });
  const queue = openQueue(QUEUE_NAME, redis, prefix);
  const store = new RunStore(redis, prefix);
  const inventory = parseInventory(inventoryCsv(cfg.targets.map((t) => ({ id: t.id, host: t.host, port: t.port }))), 'bench.csv');
  const worker = await startWorker({
    redisUrl: cfg.redisUrl,
    prefix,
    threads: cfg.threads,
    concurrency: cfg.concurrency,
    credentials: new Map([['default', creds]]),
    coreOptions: { pool: { maxConnections: maxConnectionsFor(cfg.targets.length) } },
  });
  const results: ModeResult[] = [];
  try {
    for (let i = 0; i < pollsOf(cfg); i++) {
      const rss = rssSampler();
      const others = watchedCpu(cfg.watch);
      const started = Date.now();
      // At the priority `bos-fleet poll` gives its jobs (prioritized: BullMQ keeps them in a sorted set).
      const record = await enqueueRun(queue, store, inventory, { operation: 'poll', timeoutMs: cfg.timeoutMs, jobBackoffMs: 500, priority: FOREGROUND_PRIORITY });
      await waitForRun(store, record.runId, record.total, { intervalMs: 100 });
      // CPU up to the run's end, not the reading of its outcomes below.
      const cpuMs = rss.cpuMs();
      const otherCpu = others();
      // Read in batches, as `bos-fleet results` does: the executor's RSS is the run's, not the reading's.
      const outcomes = new SummaryBuilder(record.total, started);
      for await (const batch of store.outcomeBatches(record.runId)) for (const o of batch) outcomes.add(o);
      // Enqueue → last outcome written (its finishedAt), not → when the polling wait noticed it.
      const { elapsedMs, counts } = outcomes.build();
      results.push({ ...result('pipeline', phaseLabel(cfg, i), cfg.targets.length, elapsedMs, [...outcomes.durations], rss.stop(), cpuMs, counts), ...otherCpu });
    }
  } finally {
    await worker.close();
    await queue.obliterate({ force: true });
    await queue.close();
    redis.disconnect();
  }
  return results;
}

async function baseline(cfg: ModeConfig): Promise<ModeResult[]> {
  const clients = new Map<string, grpc.Client>();
  const known = new Map<string, BareSession>();
  const core = cfg.mode === 'core' ? new FleetCore({ pool: { maxConnections: maxConnectionsFor(cfg.targets.length) }, readTimeoutMs: cfg.timeoutMs }) : undefined;
  const results: ModeResult[] = [];
  for (let i = 0; i < pollsOf(cfg); i++) {
    const latencies: number[] = [];
    const counts: Record<string, number> = {};
    const rss = rssSampler();
    const others = watchedCpu(cfg.watch);
    const started = Date.now();
    await forEachLimited(cfg.targets, cfg.concurrency, async (t) => {
      const t0 = Date.now();
      try {
        if (core) await pollMiner(core.miner({ id: t.id, host: t.host, port: t.port, credentials: creds }));
        else if (cfg.mode === 'bare') await barePoll(clients, known, t, creds, cfg.timeoutMs);
        else await naivePoll(t, creds, cfg.timeoutMs, cfg.mode === 'naive-own');
        counts['OK'] = (counts['OK'] ?? 0) + 1;
      } catch (err) {
        const code = `grpc-${(err as grpc.ServiceError).code ?? '?'}`;
        counts[code] = (counts[code] ?? 0) + 1;
      }
      latencies.push(Date.now() - t0);
    });
    const durationMs = Date.now() - started;
    results.push({ ...result(cfg.mode, phaseLabel(cfg, i), cfg.targets.length, durationMs, latencies, rss.stop(), rss.cpuMs(), counts), ...others() });
  }
  for (const c of clients.values()) c.close();
  core?.close();
  return results;
}

const cfg = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as ModeConfig;
const out = cfg.mode === 'pipeline' ? await pipeline(cfg) : await baseline(cfg);
for (const r of collapseSteady(out)) process.stdout.write(`BENCH ${JSON.stringify(r)}\n`);
process.exit(0);

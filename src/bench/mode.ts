// One benchmark mode in its own process (so its RSS is its own): prints one JSON result line.
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { DEFAULT_PREFIX, QUEUE_NAME } from '../fleet/keys.js';
import { RunStore } from '../fleet/run-store.js';
import { enqueueRun } from '../producer/enqueue.js';
import { parseInventory } from '../producer/inventory.js';
import { waitForRun } from '../producer/wait.js';
import { SIM_PASSWORD, SIM_USERNAME } from '../sim/miner.js';
import { inventoryCsv } from '../sim/plan.js';
import { startWorker } from '../workers/worker.js';
import { pollMiner } from '../workers/ops/poll.js';
import { FleetCore } from '../core/fleet-core.js';
import { barePoll, naivePoll, type BareTarget } from './bare-clients.js';
import { forEachLimited, result, rssSampler, type ModeResult } from './measure.js';

export interface ModeConfig {
  mode: 'pipeline' | 'core' | 'bare' | 'naive';
  label: string;
  redisUrl: string;
  targets: (BareTarget & { id: string })[];
  concurrency: number;
  threads: number;
  timeoutMs: number;
  /** Pipeline only: run the same inventory this many times with one worker (breakers carry over). */
  repeat: number;
}

const creds = { username: SIM_USERNAME, password: SIM_PASSWORD };

async function pipeline(cfg: ModeConfig): Promise<ModeResult[]> {
  const prefix = `${DEFAULT_PREFIX.slice(0, -1)}-bench-${process.pid}}`;
  const redis = new Redis(cfg.redisUrl, { maxRetriesPerRequest: null });
  const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
  const store = new RunStore(redis, prefix);
  const inventory = parseInventory(inventoryCsv(cfg.targets.map((t) => ({ id: t.id, host: t.host, port: t.port }))), 'bench.csv');
  const worker = await startWorker({
    redisUrl: cfg.redisUrl,
    prefix,
    threads: cfg.threads,
    concurrency: cfg.concurrency,
    credentials: new Map([['default', creds]]),
    coreOptions: { pool: { maxConnections: 8_192 } },
  });
  const results: ModeResult[] = [];
  try {
    for (let i = 0; i < cfg.repeat; i++) {
      const rss = rssSampler();
      const started = Date.now();
      const record = await enqueueRun(queue, store, inventory, { operation: 'poll', timeoutMs: cfg.timeoutMs, jobBackoffMs: 500 });
      await waitForRun(store, record.runId, record.total, { intervalMs: 100 });
      const outcomes = await store.getOutcomes(record.runId);
      // Enqueue → last outcome written (its finishedAt), not → when the polling wait noticed it.
      const durationMs = Math.max(...outcomes.map((o) => Date.parse(o.finishedAt))) - started;
      const counts: Record<string, number> = {};
      for (const o of outcomes) counts[o.code] = (counts[o.code] ?? 0) + 1;
      results.push(result('pipeline', `${cfg.label}${cfg.repeat > 1 ? ` #${i + 1}` : ''}`, cfg.targets.length, durationMs, outcomes.map((o) => o.durationMs), rss.stop(), rss.cpuMs(), counts));
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
  const core = cfg.mode === 'core' ? new FleetCore({ pool: { maxConnections: 8_192 }, readTimeoutMs: cfg.timeoutMs }) : undefined;
  const latencies: number[] = [];
  const counts: Record<string, number> = {};
  const rss = rssSampler();
  const started = Date.now();
  await forEachLimited(cfg.targets, cfg.concurrency, async (t) => {
    const t0 = Date.now();
    try {
      if (core) await pollMiner(core.miner({ id: t.id, host: t.host, port: t.port, credentials: creds }));
      else await (cfg.mode === 'bare' ? barePoll(clients, t, creds, cfg.timeoutMs) : naivePoll(t, creds, cfg.timeoutMs));
      counts['OK'] = (counts['OK'] ?? 0) + 1;
    } catch (err) {
      const code = `grpc-${(err as grpc.ServiceError).code ?? '?'}`;
      counts[code] = (counts[code] ?? 0) + 1;
    }
    latencies.push(Date.now() - t0);
  });
  const durationMs = Date.now() - started;
  const peak = rss.stop();
  const cpuMs = rss.cpuMs();
  for (const c of clients.values()) c.close();
  core?.close();
  return [result(cfg.mode, cfg.label, cfg.targets.length, durationMs, latencies, peak, cpuMs, counts)];
}

const cfg = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as ModeConfig;
const out = cfg.mode === 'pipeline' ? await pipeline(cfg) : await baseline(cfg);
for (const r of out) process.stdout.write(`BENCH ${JSON.stringify(r)}\n`);
process.exit(0);

// `bos-fleet demo`: a throwaway Redis and a simulated 1,000-miner farm with a realistic fault mix,
// polled end to end, summarized, and cleaned up.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { Redis } from 'ioredis';
import { RunStore } from '../fleet/run-store.js';
import { parseInventory } from '../producer/inventory.js';
import { runLocal } from '../producer/run-local.js';
import { startRedisServer, type LocalRedis } from '../redis/server.js';
import { inventoryCsv, startSimFleet, SIM_PASSWORD, SIM_USERNAME, type FleetControl } from '../sim/index.js';
import { DEFAULT_BASE } from '../sim/plan.js';
import { DEFAULT_CONCURRENCY, DEFAULT_THREADS, MAX_CONCURRENCY, MAX_THREADS } from '../workers/worker.js';
import { intInRange, positiveInt } from './parse.js';
import { outcomesText, progressRenderer, summaryText } from './render.js';

export const DEMO_FAULTS = 'offline=2%,blackhole=1%,slow=5%:800ms,flaky=3%,old-api=10%,bad-auth=1%,overloaded=1%';

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('simulate a 1,000-miner farm with faults on loopback, poll it end to end, print the summary, clean up')
    .option('--miners <n>', 'simulated miners', positiveInt('--miners'), 1_000)
    .option('--faults <spec>', 'fault mix', DEMO_FAULTS)
    .option('--threads <n>', 'worker threads', intInRange('--threads', 0, MAX_THREADS), DEFAULT_THREADS)
    .option('--concurrency <n>', 'jobs in flight', intInRange('--concurrency', 1, MAX_CONCURRENCY), DEFAULT_CONCURRENCY)
    .option('--base <ip>', 'first simulated miner address (loopback only)', DEFAULT_BASE)
    .action(async (opts: { miners: number; faults: string; threads: number; concurrency: number; base: string }) => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-demo-'));
      console.log(`demo: starting a throwaway redis-server and ${opts.miners} simulated miners (faults: ${opts.faults})`);
      // Ctrl-C: nothing of a demo is worth finishing (and a terminal's Ctrl-C has stopped its Redis
      // already): remove the simulated farm, its Redis and its files, and quit.
      let redis: LocalRedis | undefined;
      let fleet: FleetControl | undefined;
      const cleanUp = async () => {
        await fleet?.close();
        await redis?.stop();
        rmSync(dir, { recursive: true, force: true });
      };
      const onSignal = (sig: NodeJS.Signals) => {
        process.stderr.write(`\ndemo: ${sig}: removing the simulated farm and its Redis\n`);
        void cleanUp().finally(() => process.exit(130));
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        // Started inside the clean-up: a farm that cannot start (its addresses taken) leaves no Redis behind.
        const server = (redis = await startRedisServer({ dir }));
        const farm = (fleet = await startSimFleet({ miners: opts.miners, faults: opts.faults, base: opts.base }));
        const inventory = parseInventory(inventoryCsv(farm.miners), path.join(dir, 'farm.csv'));
        const bar = progressRenderer();
        const { record, summary } = await runLocal({
          redisUrl: server.url,
          inventory,
          operation: 'poll',
          credentials: new Map([['default', { username: SIM_USERNAME, password: SIM_PASSWORD }]]),
          threads: opts.threads,
          concurrency: opts.concurrency,
          timeoutMs: 2_000,
          jobAttempts: 2,
          jobBackoffMs: 500,
          onProgress: (p) => bar.update(p),
        });
        bar.done();
        console.log(`\n${summaryText(record, summary)}\n`);
        const r = new Redis(server.url);
        const outcomes = await new RunStore(r).getOutcomes(record.runId);
        r.disconnect();
        // A few that succeeded, and one of each way a miner failed.
        const failedByCode = new Map<string, (typeof outcomes)[number]>();
        for (const o of outcomes) if (o.code !== 'OK' && !failedByCode.has(o.code)) failedByCode.set(o.code, o);
        const sample = [...outcomes.filter((o) => o.code === 'OK').slice(0, 3), ...failedByCode.values()];
        console.log(`a few of the ${outcomes.length} outcomes (the demo's Redis goes away with it; after a real \`bos-fleet poll\`, \`bos-fleet results RUN_ID\` shows them all):\n${outcomesText(sample, 'table')}`);
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        await cleanUp();
      }
    });
}

// `bos-fleet runs` and `bos-fleet results RUN_ID`.
import { InvalidArgumentError, type Command } from 'commander';
import { DEFAULT_PREFIX, QUEUE_NAME } from '../fleet/keys.js';
import { cancelRun } from '../producer/cancel.js';
import { SummaryBuilder } from '../fleet/outcome.js';
import { RunStore } from '../fleet/run-store.js';
import { connectRedis } from './connect-redis.js';
import { listWorkers } from '../workers/registry.js';
import { positiveInt, prefixOption } from './parse.js';
import { columns, operationLabel, summaryText, writeOutcomes } from './render.js';
import { openQueue } from '../fleet/queue.js';
import { RolloutStore, TERMINAL, waveRunId } from '../rollout/store.js';
import type { Redis } from 'ioredis';

/**
 * A rollout's id given where a run's is wanted: the rollout's waves are its runs (`ID-w0`, …). Says
 * so, and where to look or what to do instead; undefined when the id names no rollout either.
 */
async function rolloutNotRun(redis: Redis, prefix: string, id: string, command: 'results' | 'cancel'): Promise<Error | undefined> {
  const rollouts = new RolloutStore(redis, prefix);
  const rollout = await rollouts.get(id);
  if (!rollout) return undefined;
  if (command === 'cancel') {
    const state = (await rollouts.status(id))?.state;
    if (state && TERMINAL.includes(state)) return new Error(`"${id}" is a rollout, not a run, and it has ended (${state}): nothing to cancel`);
    return new Error(`"${id}" is a rollout, not a run: stop it with \`bos-fleet rollout abort ${id}\` (it records which miners were changed)`);
  }
  const waves = rollout.waveEnds.length;
  const runs = waves === 1 ? waveRunId(id, 0) : `${waveRunId(id, 0)} … ${waveRunId(id, waves - 1)}`;
  return new Error(`"${id}" is a rollout, not a run: each of its ${waves} wave${waves === 1 ? ' is a run' : 's is a run'} (${runs}: bos-fleet results ${waveRunId(id, 0)}), and \`bos-fleet rollout status ${id}\` shows them together`);
}

/** Writes to stdout, waiting while its buffer is full (a large run piped into a slow reader). */
function writeStdout(text: string): Promise<void> {
  return new Promise((resolve) => (process.stdout.write(text) ? resolve() : process.stdout.once('drain', resolve)));
}

export function registerRuns(program: Command): void {
  program
    .command('runs')
    .description('list recent runs with their progress')
    .option('--redis <url>', 'Redis URL (default: REDIS_URL, else the embedded redis-server)')
    .option('--limit <n>', 'how many runs', positiveInt('--limit'), 20)
    .option('--json', 'print JSON')
    .option('--prefix <prefix>', 'Redis key prefix', prefixOption, DEFAULT_PREFIX)
    .action(async (opts: { redis?: string; limit: number; json?: boolean; prefix: string }) => {
      const { redis } = await connectRedis(opts.redis);
      try {
        const store = new RunStore(redis, opts.prefix);
        const runs = await store.listRuns(opts.limit);
        const rows = await Promise.all(runs.map(async (r) => ({ ...r, ...(await store.getCounts(r.runId)) })));
        if (opts.json) return console.log(JSON.stringify(rows.map(({ params, changes, ...r }) => ({ ...r, ...(params['dryRun'] === true ? { dryRun: true } : {}), ...(Object.keys(changes).length ? { changes } : {}) })), null, 2));
        if (rows.length === 0) return console.log('no runs yet');
        const unfinished = rows.filter((r) => r.done < r.total).length;
        if (unfinished > 0 && (await listWorkers(redis, opts.prefix)).length === 0) {
          process.stderr.write(`bos-fleet: WARNING: ${unfinished} run${unfinished === 1 ? ' is' : 's are'} unfinished and no \`bos-fleet worker\` is running on this Redis and prefix: their miners wait until one starts (or \`bos-fleet cancel RUN_ID\`)\n`);
        }
        const table = rows.map((r) => [r.runId, operationLabel(r), r.createdAt, `${r.done}/${r.total}`, `${r.counts['OK'] ?? 0}${r.inventoryTotal === undefined ? '' : `  (cut short: ${r.total} of ${r.inventoryTotal} enqueued)`}`]);
        for (const line of columns([['RUN', 'OPERATION', 'CREATED', 'DONE', 'OK'], ...table], [3])) console.log(line);
      } finally {
        redis.disconnect();
      }
    });

  program
    .command('cancel <runId>')
    .description("drop what is left of a poll run (or a dry run): its queued miners get a CANCELLED outcome; miners being polled finish; a run still being enqueued stops there")
    .option('--redis <url>', 'Redis URL (default: REDIS_URL, else the embedded redis-server)')
    .option('--json', 'print one JSON object {runId, cancelled, done, total, neverEnqueued}')
    .option('--prefix <prefix>', 'Redis key prefix', prefixOption, DEFAULT_PREFIX)
    .action(async (runId: string, opts: { redis?: string; json?: boolean; prefix: string }) => {
      const { redis } = await connectRedis(opts.redis);
      const queue = openQueue(QUEUE_NAME, redis, opts.prefix);
      try {
        // Refused (no such run, say): a rollout's id gets where to look instead.
        const r = await cancelRun(queue, new RunStore(redis, opts.prefix), runId).catch(async (err: unknown) => {
          throw (await rolloutNotRun(redis, opts.prefix, runId, 'cancel')) ?? err;
        });
        if (opts.json) return console.log(JSON.stringify(r));
        const left = r.total - r.done;
        if (r.cancelled === 0 && left === 0 && r.neverEnqueued === 0) return console.log(`run ${r.runId} had already finished (${r.done}/${r.total} have an outcome): nothing to cancel`);
        console.log(
          `run ${r.runId}: ${r.cancelled} queued miner${r.cancelled === 1 ? '' : 's'} cancelled (outcome CANCELLED); ${r.done}/${r.total} have an outcome` +
            (left > 0 ? `, the other ${left} are being polled now and end with their own` : '') +
            (r.neverEnqueued > 0 ? `; ${r.neverEnqueued} miners of its inventory had no job (Redis refused them at enqueue, or lost them since), so the run now counts ${r.total}` : ''),
        );
      } finally {
        await queue.close();
        redis.disconnect();
      }
    });

  program
    .command('results <runId>')
    .description("a run's outcomes, one per miner")
    .option('--redis <url>', 'Redis URL (default: REDIS_URL, else the embedded redis-server)')
    .option('--format <format>', 'table | json | csv', (v: string) => {
      if (v !== 'table' && v !== 'json' && v !== 'csv') throw new InvalidArgumentError(`--format must be table, json or csv, got "${v}"`);
      return v;
    }, 'table')
    .option('--failed', 'only miners whose outcome is not OK')
    .option('--prefix <prefix>', 'Redis key prefix', prefixOption, DEFAULT_PREFIX)
    .action(async (runId: string, opts: { redis?: string; format: 'table' | 'json' | 'csv'; failed?: boolean; prefix: string }) => {
      const { redis } = await connectRedis(opts.redis);
      try {
        const store = new RunStore(redis, opts.prefix);
        const record = await store.getRun(runId);
        if (!record) throw (await rolloutNotRun(redis, opts.prefix, runId, 'results')) ?? new Error(`no run "${runId}" (see bos-fleet runs; finished poll runs beyond --keep-runs / --keep-for are deleted)`);
        // Streamed: a run of hundreds of thousands of miners is never held whole.
        const summary = new SummaryBuilder(record.total, record.createdAtMs);
        const batches = async function* () {
          for await (const batch of store.outcomeBatches(runId)) {
            for (const o of batch) summary.add(o);
            yield batch;
          }
        };
        await writeOutcomes(batches(), opts.format, writeStdout, { operation: record.operation, ...(opts.failed ? { keep: (o) => o.status !== 'ok', none: 'no failed miners' } : { none: 'no outcomes yet' }) });
        if (opts.format === 'table') await writeStdout(`\n${summaryText(record, summary.build())}\n`);
      } finally {
        redis.disconnect();
      }
    });
}

// `rollout start --dry-run`: every targeted miner read, what would change printed, nothing written.
import { cancelRun } from '../producer/cancel.js';
import type { CredentialProfiles } from '../fleet/credentials.js';
import { QUEUE_NAME } from '../fleet/keys.js';
import { openQueue } from '../fleet/queue.js';
import { RunStore } from '../fleet/run-store.js';
import type { Inventory } from '../producer/inventory.js';
import { InterruptedWithoutRedisError, runLocal } from '../producer/run-local.js';
import type { TlsProfile } from '../core/tls.js';
import { describeSpec, operationOf, type MutationSpec } from '../workers/ops/mutation-spec.js';
import type { MutationData } from '../workers/ops/mutate.js';
import { interruptible, localPoolOptions, whereFlags } from './common.js';
import { connectRedis } from './connect-redis.js';
import { exitNow } from './hang-up.js';
import { columns, printable, settingText } from './render.js';

/** Miners in flight in the worker that `rollout … --wait` and a dry run run themselves. */
export const LOCAL_CONCURRENCY = 100;

export async function dryRun(flags: { redis?: string; prefix: string; json?: boolean }, inventory: Inventory, spec: MutationSpec, credentials: CredentialProfiles, tlsBySite: Record<string, TlsProfile> | undefined): Promise<void> {
  const { url, redis } = await connectRedis(flags.redis);
  // Ctrl-C: the miners being read finish; the rest are dropped (a dry run left queued would be read later by any worker).
  const stop = interruptible('stopping: the miners being read finish, the rest of the dry run is dropped');
  try {
    const run = await runLocal({ redisUrl: url, prefix: flags.prefix, inventory, operation: operationOf(spec), params: { mutation: spec, dryRun: true }, credentials, threads: 0, ...localPoolOptions(0, LOCAL_CONCURRENCY, false), signal: stop.signal, ...(tlsBySite ? { tlsBySite } : {}) })
      .catch((err: unknown) => {
        if (!(err instanceof InterruptedWithoutRedisError)) throw err;
        const where = whereFlags(flags);
        process.stderr.write(`bos-fleet: interrupted while Redis is unreachable or not answering: the dry run's reads left could not be dropped; once Redis is back, \`bos-fleet cancel ${err.runId}${where}\` drops them (a worker would read those miners; nothing is changed either way)\n`);
        exitNow(err.exitCode); // its Redis connections would wait for Redis without end
        return new Promise<never>(() => undefined);
      })
      .finally(() => stop.dispose());
    const { record, interrupted } = run;
    const store = new RunStore(redis, flags.prefix);
    if (interrupted) {
      const queue = openQueue(QUEUE_NAME, redis, flags.prefix);
      await cancelRun(queue, store, record.runId).finally(() => queue.close());
    }
    const read = (await store.getOutcomes(record.runId)).filter((o) => !(interrupted && o.code === 'CANCELLED'));
    const outcomes = read.sort((a, b) => a.minerId.localeCompare(b.minerId));
    const rows = outcomes.map((o) => {
      const d = o.data as MutationData | undefined;
      return { minerId: o.minerId, host: o.host, result: o.status === 'ok' ? (d?.change ?? 'unknown') : 'refused', code: o.code, before: d?.before, after: d?.after, ...(o.error ? { reason: o.error.message } : {}) };
    });
    if (interrupted) process.exitCode = 130;
    if (flags.json) console.log(JSON.stringify({ dryRun: true, runId: record.runId, ...(interrupted ? { interrupted: true } : {}), miners: rows }));
    else printDryRun(spec, record.total, rows, interrupted);
    // Its worker's queue connections never closed after a Redis outage: they hold none of its jobs.
    if (run.workerLeftOpen) exitNow(Number(process.exitCode ?? 0));
  } finally {
    redis.disconnect();
  }
}

type DryRunRow = { minerId: string; host: string; result: string; code: string; before?: unknown; after?: unknown; reason?: string };

function printDryRun(spec: MutationSpec, total: number, rows: DryRunRow[], interrupted: boolean): void {
  console.log(
    interrupted
      ? `dry run of ${describeSpec(spec)}, interrupted: ${rows.length} of ${total} miners read, the rest dropped; nothing was changed`
      : `dry run of ${describeSpec(spec)} on ${rows.length} miners: nothing was changed`,
  );
  const table = rows.map((r) => [r.minerId, r.host, r.result, printable(r.result === 'refused' ? `${r.code}: ${r.reason}` : `${settingText(r.before)} → ${settingText(r.after)}`)]);
  for (const line of columns(table)) console.log(line);
  // By result, and the refused by code: out of range and unreachable call for different actions.
  const tally = new Map<string, number>();
  const refusedBy = new Map<string, number>();
  for (const r of rows) {
    tally.set(r.result, (tally.get(r.result) ?? 0) + 1);
    if (r.result === 'refused') refusedBy.set(r.code, (refusedBy.get(r.code) ?? 0) + 1);
  }
  const byCode = [...refusedBy].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`).join(', ');
  console.log(`\n${[...tally].map(([k, n]) => (k === 'refused' ? `${k} ${n} (${byCode})` : `${k} ${n}`)).join(', ')}`);
}

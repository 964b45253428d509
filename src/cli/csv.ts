// `bos-fleet results --format csv`: one row per miner, the outcome's columns, then what the job read
// or changed, flattened for a spreadsheet (a poll's snapshot; a change's before, after, verified).
import { OPERATIONS } from '../fleet/job.js';
import type { Outcome } from '../fleet/outcome.js';
import type { MutationData } from '../workers/ops/mutate.js';
import type { PollSnapshot } from '../workers/ops/poll.js';

const OUTCOME_COLUMNS = ['runId', 'minerId', 'host', 'port', 'operation', 'status', 'code', 'attempts', 'jobAttempts', 'durationMs', 'finishedAt', 'transport', 'message'] as const;

type Column<D> = [name: string, value: (data: D) => unknown];

/** A poll's snapshot, named as in its JSON (dots for nesting; lists joined with `;`). */
const POLL_COLUMNS: Column<PollSnapshot>[] = [
  ['apiVersion', (d) => d.apiVersion],
  ['firmware', (d) => d.firmware],
  ['model', (d) => d.model],
  ['hostname', (d) => d.hostname],
  ['macAddress', (d) => d.macAddress],
  ['serialNumber', (d) => d.serialNumber],
  ['uptimeS', (d) => d.uptimeS],
  ['minerStatus', (d) => d.minerStatus],
  ['hashrate.realGhs5m', (d) => d.hashrate.realGhs5m],
  ['hashrate.realGhs1h', (d) => d.hashrate.realGhs1h],
  ['hashrate.nominalGhs', (d) => d.hashrate.nominalGhs],
  ['power.consumptionWatts', (d) => d.power.consumptionWatts],
  ['power.efficiencyJth', (d) => d.power.efficiencyJth],
  ['power.targetWatts', (d) => d.power.targetWatts],
  ['temperature.chipMaxC', (d) => d.temperature.chipMaxC],
  ['temperature.boardMaxC', (d) => d.temperature.boardMaxC],
  ['fans.rpm', (d) => d.fans.map((f) => f.rpm).join(';')],
  ['hashboards.enabled', (d) => d.hashboards.filter((b) => b.enabled).length],
  ['hashboards.count', (d) => d.hashboards.length],
  ['pools.activeUrl', (d) => d.pools.filter((p) => p.active).map((p) => p.url).join(';')],
  ['pools.alive', (d) => d.pools.filter((p) => p.alive).length],
  ['pools.count', (d) => d.pools.length],
  ['tuner.state', (d) => d.tuner.state],
  ['errors', (d) => d.errors?.map((e) => e.message).join(';')],
  ['unsupported', (d) => d.unsupported.join(';')],
];

/** A change's result; `before` and `after` as JSON (their shape depends on the setting). */
const CHANGE_COLUMNS: Column<MutationData>[] = [
  ['change', (d) => d.change],
  ['before', (d) => (d.before === undefined ? undefined : JSON.stringify(d.before))],
  ['after', (d) => (d.after === undefined ? undefined : JSON.stringify(d.after))],
  ['verified', (d) => d.verified],
];

/** The data columns of a run's outcomes: a poll's, a change's, or none (an operation this version does not know). */
function dataColumns(operation: string | undefined): Column<never>[] {
  if (operation === 'poll') return POLL_COLUMNS as Column<never>[];
  return (OPERATIONS as readonly string[]).includes(operation ?? '') ? (CHANGE_COLUMNS as Column<never>[]) : [];
}

function cell(v: unknown): string {
  const s = v === undefined || v === null ? '' : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/**
 * Free text that came from a miner (its error messages, hostname, pool URLs): a leading `=`, `+`,
 * `-`, `@` or tab is made inert with a `'`, so a spreadsheet opening the CSV never runs it as a formula.
 */
export const inertText = (s: string | undefined): string | undefined => (s !== undefined && /^[=+\-@\t\r]/.test(s) ? `'${s}` : s);

/** A cell of data written by another bos-fleet version (a field it lacks) is left empty, not an error. */
function valueOf(value: (data: never) => unknown, data: never): unknown {
  try {
    return value(data);
  } catch {
    return undefined;
  }
}

const inert = (v: unknown): unknown => (typeof v === 'string' ? inertText(v) : v);

/** The header row for the outcomes of a run of `operation` (undefined: the outcome's columns only). */
export function csvHeader(operation: string | undefined): string {
  return [...OUTCOME_COLUMNS, ...dataColumns(operation).map(([name]) => name)].join(',');
}

/** An outcome as a row under {@link csvHeader}; a failed job's data cells are empty. */
export function csvRow(o: Outcome, operation: string | undefined): string {
  const base = OUTCOME_COLUMNS.map((c) => cell(c === 'message' ? inertText(o.error?.message) : o[c]));
  const data = o.data as never;
  const extra = dataColumns(operation).map(([, value]) => cell(data === undefined ? undefined : inert(valueOf(value, data))));
  return [...base, ...extra].join(',');
}

// Terminal output: a progress line, the run summary table, and results as table / JSON / CSV.
import { hostPort } from '../core/channel-options.js';
import { CODE_INFO, isErrorCode } from '../core/error-codes.js';
import { byMinerId, type Outcome, type RunSummary } from '../fleet/outcome.js';
import type { RunRecord } from '../fleet/run-store.js';
import type { Progress } from '../producer/wait.js';
import { csvHeader, csvRow } from './csv.js';

const fmtMs = (ms: number) => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`);

/** Counts by code as `CODE n`, OK first, then by code: a line refreshed in place keeps each code where it was. */
export function countsInOrder(counts: Record<string, number>): string[] {
  return Object.entries(counts)
    .sort(([a], [b]) => (a === 'OK' ? -1 : b === 'OK' ? 1 : a.localeCompare(b)))
    .map(([c, n]) => `${c} ${n}`);
}

/**
 * Progress on stderr: on a TTY a one-line bar redrawn in place; elsewhere (cron, a service's log) a
 * plain line every `logEveryMs` while the counts move, so a long run is not silent until its end.
 */
export function progressRenderer(
  stream: Pick<NodeJS.WriteStream, 'isTTY' | 'write'> = process.stderr,
  opts: { logEveryMs?: number; now?: () => number } = {},
): { update(p: Progress): void; done(): void } {
  const logEveryMs = opts.logEveryMs ?? 10_000;
  const now = opts.now ?? Date.now;
  let last = '';
  let loggedAt = now();
  let loggedDone = 0;
  const countsText = (p: Progress) => countsInOrder(p.counts).join('  ');
  return {
    update(p) {
      if (!stream.isTTY) {
        if (p.done > loggedDone && now() - loggedAt >= logEveryMs) {
          stream.write(`progress: ${p.done}/${p.total}  ${countsText(p)}\n`);
          loggedAt = now();
          loggedDone = p.done;
        }
        return;
      }
      const width = 30;
      const filled = p.total ? Math.round((p.done / p.total) * width) : width;
      const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.done}/${p.total}  ${countsText(p)}`;
      if (line !== last) stream.write(`\r\x1b[2K${line}`);
      last = line;
    },
    done() {
      if (stream.isTTY && last) stream.write('\n');
    },
  };
}

/** A run's operation as shown to an operator: a dry run (`rollout start --dry-run`) says so, as it changed nothing. */
export function operationLabel(record: Pick<RunRecord, 'operation' | 'params'>): string {
  return record.params['dryRun'] === true ? `${record.operation} (dry run)` : record.operation;
}

/** A run Redis refused part of at enqueue: how much of the inventory it covers, and why. */
export function cutShort(record: RunRecord): string {
  return `CUT SHORT: only ${record.total} of the inventory's ${record.inventoryTotal} miners were enqueued (${printable(record.enqueueError ?? 'Redis refused the rest')})`;
}

export function summaryText(record: RunRecord, summary: RunSummary): string {
  const head = `run ${record.runId}  ${operationLabel(record)}  `;
  // An unfinished run (still running, interrupted, or waiting for a worker) says so.
  const toGo = summary.total - summary.done;
  if (summary.done === 0) return [`${head}0/${summary.total} miners done, ${toGo} to go`, ...(record.inventoryTotal === undefined ? [] : [cutShort(record)])].join('\n');
  const lines = [
    `${head}${summary.done}/${summary.total} miners ${toGo > 0 ? `so far (${toGo} to go), ` : ''}in ${fmtMs(summary.elapsedMs)} ` +
      `(${summary.throughputPerS.toFixed(1)} miners/s)  p50 ${fmtMs(summary.p50DurationMs)}  p95 ${fmtMs(summary.p95DurationMs)}`,
    ...(record.inventoryTotal === undefined ? [] : [cutShort(record)]),
    '',
  ];
  const rows = Object.entries(summary.counts).sort(([a, x], [b, y]) => (a === 'OK' ? -1 : b === 'OK' ? 1 : y - x));
  const table = [['CODE', 'COUNT', 'SUGGESTION'], ...rows.map(([code, n]) => [code, String(n), isErrorCode(code) ? CODE_INFO[code].suggestion : ''])];
  lines.push(...columns(table, [1]));
  return lines.join('\n');
}

/**
 * Rows of cells as lines of aligned columns, each as wide as its widest cell (the header row
 * included), two spaces apart; columns listed in `right` are right-aligned; no line ends in spaces
 * (the last column is not padded, and an empty last cell leaves none).
 */
export function columns(rows: readonly (readonly string[])[], right: readonly number[] = []): string[] {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 && !right.includes(i) ? cell : right.includes(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
}

/** Text from a miner shown on a terminal: control characters (escape sequences) are shown, never obeyed. */
export const printable = (s: string): string => s.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);

interface TableRow {
  id: string;
  host: string;
  code: string;
  tries: string;
  time: string;
  detail: string;
}

interface PoolGroupShown {
  name?: unknown;
  quota?: unknown;
  fixedShareRatio?: unknown;
  pools?: { url?: unknown; user?: unknown; enabled?: unknown }[];
}

/** A pool group's share of the hashrate: its fixed share ratio, else its quota. */
const groupShare = (g: PoolGroupShown): string =>
  g.fixedShareRatio !== null && g.fixedShareRatio !== undefined ? ` (share ${String(g.fixedShareRatio)})` : g.quota !== null && g.quota !== undefined ? ` (quota ${String(g.quota)})` : '';

/**
 * A miner setting as a person reads it: `powerTargetWatts 2760`, `hashrateTargetThs none,
 * powerTargetWatts 2760`, pool groups as `Main (quota 1): stratum+tcp://pool:3333 farm.m1; Backup …`
 * (a disabled pool says so; a password is never read from a miner). Cut at `max` characters when
 * given (`--format json` has it whole).
 */
export function settingText(v: unknown, max?: number): string {
  let t: string;
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const groups = (v as { groups?: unknown }).groups;
    t = Array.isArray(groups)
      ? (groups as PoolGroupShown[]).map((g) => `${String(g.name)}${groupShare(g)}: ${(g.pools ?? []).map((p) => `${String(p.url)} ${String(p.user)}${p.enabled === false ? ' (disabled)' : ''}`).join(', ') || 'no pools'}`).join('; ') || 'no pool groups'
      : Object.entries(v).map(([k, x]) => `${k} ${x === null || x === undefined ? 'none' : typeof x === 'object' ? JSON.stringify(x) : String(x)}`).join(', ');
  } else {
    t = JSON.stringify(v ?? null);
  }
  return max !== undefined && t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

/** A change's detail: `applied {before} → {after}` (read back: a mismatch is VERIFY_MISMATCH), `unchanged {value}`. */
function changeText(c: { change?: unknown; before?: unknown; after?: unknown }): string {
  const shown = (v: unknown) => settingText(v, 100);
  return c.change === 'unchanged' ? `unchanged ${shown(c.before)}` : `${String(c.change).replace('-', ' ')} ${shown(c.before)} → ${shown(c.after)}`;
}

function tableRow(o: Outcome): TableRow {
  const d = o.data as { model?: string; hashrate?: { realGhs5m?: number | null }; power?: { consumptionWatts?: number | null }; change?: unknown } | undefined;
  const detail = o.error
    ? o.error.message
    : d?.model
      ? `${d.model}  ${((d.hashrate?.realGhs5m ?? 0) / 1000).toFixed(1)} TH/s  ${d.power?.consumptionWatts ?? '?'} W`
      : d?.change !== undefined
        ? changeText(d)
        : '';
  return { id: o.minerId, host: hostPort(o.host, o.port), code: o.code, tries: `${o.attempts}/${o.jobAttempts}`, time: fmtMs(o.durationMs), detail: printable(detail) };
}

function tableText(rows: TableRow[]): string {
  // CALL/JOB: in-call attempts of the call that needed most / the job's attempts (BullMQ's).
  const table = [['MINER', 'HOST', 'CODE', 'CALL/JOB', 'TIME', 'DETAIL'], ...rows.map((r) => [r.id, r.host, r.code, r.tries, r.time, r.detail])];
  return columns(table, [3, 4]).join('\n');
}

/** An outcome as an element of a 2-space-indented JSON array (as JSON.stringify(array, null, 2) gives it). */
const jsonElement = (o: Outcome) => `  ${JSON.stringify(o, null, 2).replace(/\n/g, '\n  ')}`;

/** `operation`: the run's, which decides the CSV's data columns (default: the first outcome's). */
export function outcomesText(outcomes: Outcome[], format: 'table' | 'json' | 'csv', operation: string | undefined = outcomes[0]?.operation): string {
  const sorted = [...outcomes].sort((a, b) => byMinerId(a.minerId, b.minerId));
  if (format === 'json') return sorted.length ? `[\n${sorted.map(jsonElement).join(',\n')}\n]` : '[]';
  if (format === 'csv') return [csvHeader(operation), ...sorted.map((o) => csvRow(o, operation))].join('\n');
  return tableText(sorted.map(tableRow));
}

/**
 * Writes outcomes as they are read, batch by batch, in the same text as {@link outcomesText}: JSON and
 * CSV stream (the JSON of a few hundred thousand polls is larger than one string may be); the table
 * keeps only its rows' text, for the column widths. `keep` filters what is written; `operation`, the
 * run's, decides the CSV's data columns.
 */
export async function writeOutcomes(
  batches: AsyncIterable<Outcome[]>,
  format: 'table' | 'json' | 'csv',
  write: (text: string) => Promise<void>,
  opts: { keep?: (o: Outcome) => boolean; operation?: string; /** The table's text when no outcome is kept. */ none?: string } = {},
): Promise<void> {
  const keep = opts.keep ?? (() => true);
  const rows: TableRow[] = [];
  let written = 0;
  if (format === 'csv') await write(csvHeader(opts.operation));
  for await (const batch of batches) {
    const kept = batch.filter(keep);
    if (kept.length === 0) continue;
    if (format === 'table') rows.push(...kept.map(tableRow));
    else if (format === 'csv') await write(`\n${kept.map((o) => csvRow(o, opts.operation)).join('\n')}`);
    else await write(`${written ? ',\n' : '[\n'}${kept.map(jsonElement).join(',\n')}`);
    written += kept.length;
  }
  if (format === 'table') await write(rows.length === 0 && opts.none ? opts.none : tableText(rows));
  else if (format === 'json') await write(written ? '\n]' : '[]');
  await write('\n');
}

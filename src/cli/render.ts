// Terminal output: a progress line, the run summary table, and results as table / JSON / CSV.
import { CODE_INFO, isErrorCode } from '../core/error-codes.js';
import { byMinerId, type Outcome, type RunSummary } from '../fleet/outcome.js';
import type { RunRecord } from '../fleet/run-store.js';
import type { Progress } from '../producer/wait.js';
import { csvHeader, csvRow } from './csv.js';

const fmtMs = (ms: number) => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`);

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
  const countsText = (p: Progress) =>
    Object.entries(p.counts)
      .sort(([a], [b]) => (a === 'OK' ? -1 : b === 'OK' ? 1 : a.localeCompare(b)))
      .map(([c, n]) => `${c} ${n}`)
      .join('  ');
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

/** A run Redis refused part of at enqueue: how much of the inventory it covers, and why. */
export function cutShort(record: RunRecord): string {
  return `CUT SHORT: only ${record.total} of the inventory's ${record.inventoryTotal} miners were enqueued (${printable(record.enqueueError ?? 'Redis refused the rest')})`;
}

export function summaryText(record: RunRecord, summary: RunSummary): string {
  const lines = [
    `run ${record.runId}  ${record.operation}  ${summary.done}/${summary.total} miners in ${fmtMs(summary.elapsedMs)} ` +
      `(${summary.throughputPerS.toFixed(1)} miners/s)  p50 ${fmtMs(summary.p50DurationMs)}  p95 ${fmtMs(summary.p95DurationMs)}`,
    ...(record.inventoryTotal === undefined ? [] : [cutShort(record)]),
    '',
  ];
  const rows = Object.entries(summary.counts).sort(([a, x], [b, y]) => (a === 'OK' ? -1 : b === 'OK' ? 1 : y - x));
  const w = Math.max(4, ...rows.map(([c]) => c.length));
  lines.push(`${'CODE'.padEnd(w)}  ${'COUNT'.padStart(6)}  SUGGESTION`);
  for (const [code, n] of rows) {
    const suggestion = isErrorCode(code) ? CODE_INFO[code].suggestion : '';
    lines.push(`${code.padEnd(w)}  ${String(n).padStart(6)}  ${suggestion}`);
  }
  return lines.join('\n');
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

function tableRow(o: Outcome): TableRow {
  const d = o.data as { model?: string; hashrate?: { realGhs5m?: number | null }; power?: { consumptionWatts?: number | null } } | undefined;
  const detail = o.error
    ? o.error.message
    : d?.model
      ? `${d.model}  ${((d.hashrate?.realGhs5m ?? 0) / 1000).toFixed(1)} TH/s  ${d.power?.consumptionWatts ?? '?'} W`
      : '';
  return { id: o.minerId, host: `${o.host}:${o.port}`, code: o.code, tries: `${o.attempts}/${o.jobAttempts}`, time: fmtMs(o.durationMs), detail: printable(detail) };
}

function tableText(rows: TableRow[]): string {
  let idW = 5;
  let hostW = 4;
  let codeW = 4;
  for (const r of rows) {
    idW = Math.max(idW, r.id.length);
    hostW = Math.max(hostW, r.host.length);
    codeW = Math.max(codeW, r.code.length);
  }
  return [
    // CALL/JOB: in-call attempts of the call that needed most / the job's attempts (BullMQ's).
    `${'MINER'.padEnd(idW)}  ${'HOST'.padEnd(hostW)}  ${'CODE'.padEnd(codeW)}  CALL/JOB  ${'TIME'.padStart(8)}  DETAIL`,
    ...rows.map((r) => `${r.id.padEnd(idW)}  ${r.host.padEnd(hostW)}  ${r.code.padEnd(codeW)}  ${r.tries.padStart(8)}  ${r.time.padStart(8)}  ${r.detail}`),
  ].join('\n');
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
  opts: { keep?: (o: Outcome) => boolean; operation?: string } = {},
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
  if (format === 'table') await write(tableText(rows));
  else if (format === 'json') await write(written ? '\n]' : '[]');
  await write('\n');
}

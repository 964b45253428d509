// Terminal output: a progress line, the run summary table, and results as table / JSON / CSV.
import { CODE_INFO, isErrorCode } from '../core/error-codes.js';
import type { Outcome, RunSummary } from '../fleet/outcome.js';
import type { RunRecord } from '../fleet/run-store.js';
import type { Progress } from '../producer/wait.js';

const fmtMs = (ms: number) => (ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`);

/** A one-line progress bar on a TTY (stderr), redrawn in place; silent elsewhere. */
export function progressRenderer(stream: NodeJS.WriteStream = process.stderr): { update(p: Progress): void; done(): void } {
  let last = '';
  return {
    update(p) {
      if (!stream.isTTY) return;
      const width = 30;
      const filled = p.total ? Math.round((p.done / p.total) * width) : width;
      const counts = Object.entries(p.counts)
        .sort(([a], [b]) => (a === 'OK' ? -1 : b === 'OK' ? 1 : a.localeCompare(b)))
        .map(([c, n]) => `${c} ${n}`)
        .join('  ');
      const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${p.done}/${p.total}  ${counts}`;
      if (line !== last) stream.write(`\r\x1b[2K${line}`);
      last = line;
    },
    done() {
      if (stream.isTTY && last) stream.write('\n');
    },
  };
}

export function summaryText(record: RunRecord, summary: RunSummary): string {
  const lines = [
    `run ${record.runId}  ${record.operation}  ${summary.done}/${summary.total} miners in ${fmtMs(summary.elapsedMs)} ` +
      `(${summary.throughputPerS.toFixed(1)} miners/s)  p50 ${fmtMs(summary.p50DurationMs)}  p95 ${fmtMs(summary.p95DurationMs)}`,
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

const CSV_COLUMNS = ['runId', 'minerId', 'host', 'port', 'operation', 'status', 'code', 'attempts', 'jobAttempts', 'durationMs', 'finishedAt', 'transport', 'message'] as const;

function csvCell(v: unknown): string {
  const s = v === undefined || v === null ? '' : String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function outcomesText(outcomes: Outcome[], format: 'table' | 'json' | 'csv'): string {
  const sorted = [...outcomes].sort((a, b) => a.minerId.localeCompare(b.minerId));
  if (format === 'json') return JSON.stringify(sorted, null, 2);
  if (format === 'csv') {
    const rows = sorted.map((o) => CSV_COLUMNS.map((c) => csvCell(c === 'message' ? o.error?.message : o[c])).join(','));
    return [CSV_COLUMNS.join(','), ...rows].join('\n');
  }
  const idW = Math.max(5, ...sorted.map((o) => o.minerId.length));
  const hostW = Math.max(4, ...sorted.map((o) => `${o.host}:${o.port}`.length));
  const codeW = Math.max(4, ...sorted.map((o) => o.code.length));
  return [
    `${'MINER'.padEnd(idW)}  ${'HOST'.padEnd(hostW)}  ${'CODE'.padEnd(codeW)}  TRIES  ${'TIME'.padStart(8)}  DETAIL`,
    ...sorted.map((o) => {
      const d = o.data as { model?: string; hashrate?: { realGhs5m?: number | null }; power?: { consumptionWatts?: number | null } } | undefined;
      const detail = o.error
        ? o.error.message
        : d?.model
          ? `${d.model}  ${((d.hashrate?.realGhs5m ?? 0) / 1000).toFixed(1)} TH/s  ${d.power?.consumptionWatts ?? '?'} W`
          : '';
      return `${o.minerId.padEnd(idW)}  ${`${o.host}:${o.port}`.padEnd(hostW)}  ${o.code.padEnd(codeW)}  ${`${o.attempts}/${o.jobAttempts}`.padStart(5)}  ${fmtMs(o.durationMs).padStart(8)}  ${detail}`;
    }),
  ].join('\n');
}

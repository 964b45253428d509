// The outcome written for every miner of a run, and the run summary derived from outcomes.
import type { ErrorCode } from '../core/error-codes.js';

export interface Outcome {
  runId: string;
  minerId: string;
  host: string;
  port: number;
  operation: string;
  status: 'ok' | 'failed';
  code: 'OK' | ErrorCode;
  /**
   * In-call attempts of the call that needed the most (1 = no retry). This, `durationMs` and `error`
   * are those of the job attempt the outcome reports: the last, or the one before it when the last
   * was skipped by an open breaker.
   */
  attempts: number;
  /** BullMQ job attempts (1 = the first run of the job). */
  jobAttempts: number;
  /** Time that job attempt spent on the miner. */
  durationMs: number;
  finishedAt: string;
  transport: 'plaintext' | 'tls';
  error?: { message: string; suggestion: string };
  data?: unknown;
}

export interface RunSummary {
  total: number;
  done: number;
  counts: Record<string, number>;
  p50DurationMs: number;
  p95DurationMs: number;
  /** Miners finished per second, from the run's creation to its last outcome. */
  throughputPerS: number;
  elapsedMs: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}

/** Miner ids in the order results are shown (code-unit order: fast, and the same everywhere). */
export const byMinerId = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Builds a run's summary from its outcomes one at a time (a run of any size, without holding them). */
export class SummaryBuilder {
  private readonly counts: Record<string, number> = {};
  private readonly durationsMs: number[] = [];
  private lastMs: number;

  constructor(
    private readonly total: number,
    private readonly createdAtMs: number,
  ) {
    this.lastMs = createdAtMs;
  }

  add(o: Outcome): void {
    this.counts[o.code] = (this.counts[o.code] ?? 0) + 1;
    this.durationsMs.push(o.durationMs);
    this.lastMs = Math.max(this.lastMs, Date.parse(o.finishedAt));
  }

  /** Every outcome's duration so far (ms), in the order added. */
  get durations(): readonly number[] {
    return this.durationsMs;
  }

  build(): RunSummary {
    const durations = [...this.durationsMs].sort((a, b) => a - b);
    const elapsedMs = Math.max(1, this.lastMs - this.createdAtMs);
    return {
      total: this.total,
      done: durations.length,
      counts: { ...this.counts },
      p50DurationMs: percentile(durations, 50),
      p95DurationMs: percentile(durations, 95),
      throughputPerS: durations.length / (elapsedMs / 1000),
      elapsedMs,
    };
  }
}

export function summarize(outcomes: Outcome[], total: number, createdAtMs: number): RunSummary {
  const builder = new SummaryBuilder(total, createdAtMs);
  for (const o of outcomes) builder.add(o);
  return builder.build();
}

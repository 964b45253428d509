// What a worker process's consumers finished, for its periodic log line: outcomes written, by code,
// and failed attempts that BullMQ will run again.
import type { Job, Worker } from 'bullmq';
import { isFinalFailure } from './processor.js';

export interface Activity {
  outcomes: Record<string, number>;
  retries: number;
}

export function totalOutcomes(a: Activity): number {
  return Object.values(a.outcomes).reduce((sum, n) => sum + n, 0);
}

/** "1,234 outcomes (OK 1,200, MINER_UNREACHABLE 34), 12 attempts to run again" */
export function activityText(a: Activity): string {
  const codes = Object.entries(a.outcomes)
    .sort(([x, m], [y, n]) => (x === 'OK' ? -1 : y === 'OK' ? 1 : n - m))
    .map(([code, n]) => `${code} ${n.toLocaleString('en-US')}`)
    .join(', ');
  const total = totalOutcomes(a);
  return `${total.toLocaleString('en-US')} outcome${total === 1 ? '' : 's'}${codes ? ` (${codes})` : ''}${a.retries ? `, ${a.retries.toLocaleString('en-US')} attempt${a.retries === 1 ? '' : 's'} to run again` : ''}`;
}

/**
 * Counts from the consumers' events: `take()` returns the counts since the last take, `total()` all
 * of them since the start.
 */
export function watchActivity(workers: Worker[]): { take(): Activity; total(): Activity } {
  let current: Activity = { outcomes: {}, retries: 0 };
  const sum: Activity = { outcomes: {}, retries: 0 };
  const add = (code: string) => (current.outcomes[code] = (current.outcomes[code] ?? 0) + 1);
  for (const w of workers) {
    w.on('completed', (_job: Job, result: { code?: string; skipped?: boolean } | undefined) => {
      if (!result?.skipped) add(result?.code ?? 'OK'); // a skipped job's outcome was counted when written
    });
    w.on('failed', (job: Job | undefined, err: Error) => {
      if (isFinalFailure(job, err)) add(/^([A-Z_]+):/.exec(err.message)?.[1] ?? 'INTERNAL');
      else current.retries++;
    });
  }
  const take = (): Activity => {
    const taken = current;
    current = { outcomes: {}, retries: 0 };
    for (const [code, n] of Object.entries(taken.outcomes)) sum.outcomes[code] = (sum.outcomes[code] ?? 0) + n;
    sum.retries += taken.retries;
    return taken;
  };
  return {
    take,
    total() {
      take();
      return sum;
    },
  };
}

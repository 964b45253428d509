// What a worker process's consumers finished, for its periodic log line: outcomes written, by code,
// failed attempts that BullMQ will run again, and jobs handed on to workers that can do them.
import type { Job, Worker } from 'bullmq';
import { HANDED_ON } from './hand-on.js';
import { isFinalFailure } from '../fleet/job.js';

export interface Activity {
  outcomes: Record<string, number>;
  retries: number;
  /** Jobs this worker could not do, handed on to the workers that can (hand-on.ts). */
  handedOn: number;
}

const none = (): Activity => ({ outcomes: {}, retries: 0, handedOn: 0 });

export function totalOutcomes(a: Activity): number {
  return Object.values(a.outcomes).reduce((sum, n) => sum + n, 0);
}

/** "1,234 outcomes (OK 1,200, MINER_UNREACHABLE 34), 12 attempts to run again, 56 handed on to workers that can do them" */
export function activityText(a: Activity): string {
  const codes = Object.entries(a.outcomes)
    .sort(([x, m], [y, n]) => (x === 'OK' ? -1 : y === 'OK' ? 1 : n - m))
    .map(([code, n]) => `${code} ${n.toLocaleString('en-US')}`)
    .join(', ');
  const total = totalOutcomes(a);
  return `${total.toLocaleString('en-US')} outcome${total === 1 ? '' : 's'}${codes ? ` (${codes})` : ''}${a.retries ? `, ${a.retries.toLocaleString('en-US')} attempt${a.retries === 1 ? '' : 's'} to run again` : ''}${a.handedOn ? `, ${a.handedOn.toLocaleString('en-US')} handed on to workers that can do them` : ''}`;
}

/**
 * Counts from the consumers' events (those given, and any `attach`ed later): `take()` returns the
 * counts since the last take, `total()` all of them since the start.
 */
export function watchActivity(workers: Worker[] = []): { attach(w: Worker): void; take(): Activity; total(): Activity } {
  let current = none();
  const sum = none();
  const add = (code: string) => (current.outcomes[code] = (current.outcomes[code] ?? 0) + 1);
  const attach = (w: Worker) => {
    w.on('completed', (_job: Job, result: { code?: string; skipped?: boolean } | undefined) => {
      if (result?.code === HANDED_ON) current.handedOn++;
      else if (!result?.skipped) add(result?.code ?? 'OK'); // a skipped job's outcome was counted when written
    });
    w.on('failed', (job: Job | undefined, err: Error) => {
      if (isFinalFailure(job, err)) add(/^([A-Z_]+):/.exec(err.message)?.[1] ?? 'INTERNAL');
      else current.retries++;
    });
  };
  workers.forEach(attach);
  const take = (): Activity => {
    const taken = current;
    current = none();
    for (const [code, n] of Object.entries(taken.outcomes)) sum.outcomes[code] = (sum.outcomes[code] ?? 0) + n;
    sum.retries += taken.retries;
    sum.handedOn += taken.handedOn;
    return taken;
  };
  return {
    attach,
    take,
    total() {
      take();
      return sum;
    },
  };
}

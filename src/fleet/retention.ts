// Which finished poll runs Redis keeps: each series (a schedule's runs, or `bos-fleet poll`'s own) by
// its own numbers.
import type { RunRecord } from './run-store.js';

/**
 * How many finished poll runs of one series (a schedule's, or `bos-fleet poll`'s) Redis keeps (a
 * 100,000-miner poll's outcomes take ~150 MB there): the newest `keepRuns`, and none older than
 * `keepForMs`. Runs of changes are kept here; a rollout schedule's rollouts go by its own policy
 * (rollout/retention.ts).
 */
export interface RetentionPolicy {
  keepRuns: number;
  keepForMs: number;
}

export const DEFAULT_RETENTION: RetentionPolicy = { keepRuns: 20, keepForMs: 7 * 24 * 3_600_000 };

/**
 * The ids of the finished poll runs beyond their series' retention, of `runs` (newest first, with
 * how many miners each has an outcome for). `policy` is for `series`, the caller's (a schedule's id;
 * '' for `bos-fleet poll`'s); every other series keeps what its newest run's retention says.
 */
export function runsBeyond(runs: readonly { id: string; record: RunRecord; done: number }[], policy: RetentionPolicy, series: string, nowMs: number): string[] {
  const doomed: string[] = [];
  const seen = new Map<string, { policy: RetentionPolicy; polls: number }>();
  for (const { id, record, done } of runs) {
    if (record.operation !== 'poll') continue;
    const own = record.series ?? '';
    let s = seen.get(own);
    if (!s) seen.set(own, (s = { policy: own === series ? policy : (record.retention ?? DEFAULT_RETENTION), polls: 0 }));
    s.polls++;
    if (done >= record.total && (s.polls > s.policy.keepRuns || nowMs - record.createdAtMs > s.policy.keepForMs)) doomed.push(id);
  }
  return doomed;
}

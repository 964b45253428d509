// A schedule's finished rollouts do not pile up in Redis: a curtailment every day on 100,000 miners
// keeps ~50 MB of outcomes and journal per rollout, and a rollout started by a tick was kept for
// ever. They are kept by the schedule's --keep-runs / --keep-for, like a poll schedule's runs; the
// audit log keeps what each one did. Rollouts started by hand are kept (a rollback reads them).
import type { Redis } from 'ioredis';
import { RunStore } from '../fleet/run-store.js';
import type { RetentionPolicy } from '../fleet/retention.js';
import { RolloutStore, waveRunId, type RolloutState } from './store.js';

/** States whose rollouts may go: ended, nothing in flight. A failed one waits for resume or abort. */
const PRUNABLE: readonly RolloutState[] = ['completed', 'halted', 'aborted'];

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Deletes the finished rollouts of schedule `scheduleId` (ids `<scheduleId>-<tick ms>`) beyond
 * `policy`: all but the newest `keepRuns`, and those whose tick is older than `keepForMs`. A rollout
 * whose waves still have miners without an outcome (an abort lets the miners being changed finish)
 * is kept until they have one. Returns the deleted rollout ids.
 */
export async function pruneScheduleRollouts(redis: Redis, prefix: string, scheduleId: string, policy: RetentionPolicy, nowMs = Date.now()): Promise<string[]> {
  const rollouts = new RolloutStore(redis, prefix);
  const runs = new RunStore(redis, prefix);
  const tick = new RegExp(`^${escapeRegExp(scheduleId)}-(\\d+)$`);
  const ids = (await rollouts.listAll()).filter((id) => tick.test(id)); // newest first
  const doomed: { id: string; waves: number }[] = [];
  let kept = 0;
  for (const id of ids) {
    const st = await rollouts.status(id);
    const rec = st && PRUNABLE.includes(st.state) ? await rollouts.get(id) : undefined;
    if (!rec) {
      kept++; // unfinished (or gone): counts as one of the newest, never deleted
      continue;
    }
    if (++kept <= policy.keepRuns && nowMs - Number(tick.exec(id)?.[1]) <= policy.keepForMs) continue;
    let settled = true;
    for (let w = 0; w < rec.waveEnds.length && settled; w++) {
      const run = await runs.getRun(waveRunId(id, w));
      if (run && (await runs.getCounts(run.runId)).done < run.total) settled = false;
    }
    if (settled) doomed.push({ id, waves: rec.waveEnds.length });
  }
  for (const { id, waves } of doomed) {
    await runs.deleteRuns(Array.from({ length: waves }, (_, w) => waveRunId(id, w)));
    await rollouts.delete(id);
  }
  return doomed.map((d) => d.id);
}

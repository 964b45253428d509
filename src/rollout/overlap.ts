// Two unfinished rollouts never change one setting of one miner side by side: the last write would
// win, and each one's rollback would restore the other's value.
import type { JobTarget, MutationOperation } from '../fleet/job.js';
import { MAY_CHANGE, type RolloutState, type RolloutStore } from './store.js';

/** The setting each operation changes: two unfinished rollouts of one setting on one miner fight. */
export const SETTING: Record<MutationOperation, string> = {
  'power-target': 'tuner target',
  'hashrate-target': 'tuner target',
  pools: 'pools',
  pause: 'mining state',
  resume: 'mining state',
  reboot: 'reboot',
  'locate-on': 'locate LED',
  'locate-off': 'locate LED',
};

/** Refused start (or resume): an unfinished rollout already changes the same setting on some of the miners. */
export class RolloutOverlapError extends Error {}

/** What is compared: a plan about to start, or a rollout about to be resumed. */
export interface OverlapCandidate {
  operation: MutationOperation;
  targets: readonly JobTarget[];
  rolloutId?: string;
  rollbackOf?: string;
}

/**
 * The first rollout (newest first) that may still change the candidate's setting on any of its
 * miners: an unfinished one, or a failed one (it may be resumed).
 */
export async function overlapping(store: RolloutStore, c: OverlapCandidate): Promise<{ rolloutId: string; operation: string; state: RolloutState; shared: number } | undefined> {
  const mine = new Set(c.targets.map((t) => t.minerId));
  for (const id of await store.inStates(MAY_CHANGE)) {
    if (id === c.rolloutId || id === c.rollbackOf) continue;
    const st = await store.status(id);
    if (!st || !MAY_CHANGE.includes(st.state)) continue;
    const rec = await store.get(id);
    if (!rec || SETTING[rec.operation] !== SETTING[c.operation]) continue;
    const shared = ((await store.members(id))?.targets ?? []).filter((t) => mine.has(t.minerId)).length;
    if (shared > 0) return { rolloutId: id, operation: rec.operation, state: st.state, shared };
  }
  return undefined;
}

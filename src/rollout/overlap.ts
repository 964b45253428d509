// Two unfinished rollouts never change one setting of one miner side by side: the last write would
// win, and each one's rollback would restore the other's value. Nor does a reboot run beside any
// other change of the same miners.
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

/**
 * Whether two rollouts' operations fight on one miner: the same setting, or a reboot and anything
 * (a change sent while its miner restarts fails, and the first wave's failures halt the rollout).
 */
export function clashes(a: MutationOperation, b: MutationOperation): boolean {
  return SETTING[a] === SETTING[b] || a === 'reboot' || b === 'reboot';
}

/** Refused start (or resume): an unfinished rollout already changes the same setting on some of the miners. */
export class RolloutOverlapError extends Error {}

/**
 * What the other rollout does to the shared miners, for a refusal: "already changes the tuner target
 * of 5 of these 10 miners" (`since`: it started after the candidate, which is being resumed).
 */
export function clashWhat(clash: { operation: string; shared: number }, operation: MutationOperation, miners: string, since = false): string {
  const other = clash.operation as MutationOperation;
  const verb = (now: string, later: string) => (since ? `has since started ${later}` : now);
  if (other === 'reboot') return `${verb('is rebooting', 'rebooting')} ${clash.shared} of ${miners}${operation === 'reboot' ? '' : ' (a change sent while a miner restarts fails)'}`;
  if (SETTING[other] === SETTING[operation]) return `${verb('already changes', 'changing')} the ${SETTING[operation]} of ${clash.shared} of ${miners}`;
  return `${verb('is changing', 'changing')} the ${SETTING[other]} of ${clash.shared} of ${miners} (a reboot would fail that change)`;
}

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
    if (!rec || !clashes(rec.operation, c.operation)) continue;
    const shared = ((await store.members(id))?.targets ?? []).filter((t) => mine.has(t.minerId)).length;
    if (shared > 0) return { rolloutId: id, operation: rec.operation, state: st.state, shared };
  }
  return undefined;
}

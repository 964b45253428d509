// Rollback: the per-miner specs that put every miner a rollout changed back to its recorded `before`.
import type { Redis } from 'ioredis';
import type { JobTarget } from '../fleet/job.js';
import { DEFAULT_PREFIX } from '../fleet/keys.js';
import { RunStore } from '../fleet/run-store.js';
import type { MutationData } from '../workers/ops/mutate.js';
import type { MutationSpec } from '../workers/ops/mutation-spec.js';
import { noRollout, RolloutStore, TERMINAL, waveRunId, type RolloutHeader } from './store.js';

/**
 * The per-miner specs that put every miner the rollout changed back to its recorded `before`: those
 * whose change was applied, and those whose change failed after the write may have landed (its
 * `before` was journaled just before the write; restoring an unchanged miner is a no-op).
 */
export async function rollbackPlanFor(
  redis: Redis,
  rolloutId: string,
  prefix = DEFAULT_PREFIX,
): Promise<{ rec: RolloutHeader; targets: JobTarget[]; specByMiner: Record<string, MutationSpec>; skipped: string[]; uncertain: string[] }> {
  const store = new RolloutStore(redis, prefix);
  const rec = await store.get(rolloutId);
  if (!rec) throw noRollout(rolloutId);
  if (rec.operation === 'reboot') throw new Error('a reboot cannot be rolled back');
  // Rolled back while it still runs, it would go on changing miners the rollback never restores.
  const st = await store.status(rolloutId);
  if (st && !TERMINAL.includes(st.state)) {
    throw new Error(`rollout ${rolloutId} is ${st.state}: abort it first (bos-fleet rollout abort ${rolloutId}), then roll it back; rolled back now, the miners it changes from here on would be left changed`);
  }
  const runs = new RunStore(redis, prefix);
  const byId = new Map(((await store.members(rolloutId))?.targets ?? []).map((t) => [t.minerId, t]));
  const targets: JobTarget[] = [];
  const specByMiner: Record<string, MutationSpec> = {};
  const skipped: string[] = [];
  const uncertain: string[] = [];
  const inFlight: InFlight[] = [];
  for (let w = 0; w < rec.waveEnds.length; w++) {
    const runId = waveRunId(rolloutId, w);
    const journal = await runs.journalEntries(runId);
    const outcomes = await runs.getOutcomes(runId);
    // Journaled (about to be written) with no outcome yet: being changed now, or its worker died on it.
    const settled = new Set(outcomes.map((o) => o.minerId));
    inFlight.push(...[...journal.keys()].filter((id) => !settled.has(id)).map((minerId) => ({ runId, minerId })));
    for (const o of outcomes) {
      const data = o.data as MutationData | undefined;
      let before: unknown;
      if (o.status === 'ok' && data?.change === 'applied') before = data.before;
      else if (o.status !== 'ok' && journal.has(o.minerId)) {
        before = journal.get(o.minerId);
        uncertain.push(o.minerId);
      } else continue;
      const spec = restoreSpec(rec.spec, before);
      const target = byId.get(o.minerId);
      if (!spec || !target) {
        skipped.push(o.minerId);
        continue;
      }
      targets.push(target);
      specByMiner[o.minerId] = spec;
    }
  }
  if (inFlight.length) {
    throw new RolloutSettlingError(
      inFlight,
      byId.size,
      `rollout ${rolloutId} still has ${inFlight.length} miner${inFlight.length === 1 ? '' : 's'} being changed (${inFlight.slice(0, 5).map((m) => m.minerId).join(', ')}${inFlight.length > 5 ? ', …' : ''}): roll back once ${inFlight.length === 1 ? 'it has its' : 'they have their'} outcome (a running \`bos-fleet worker\` settles them; \`bos-fleet rollout status ${rolloutId}\` shows what is to go)`,
    );
  }
  return { rec, targets, specByMiner, skipped, uncertain };
}

/** A miner journaled for its write in a wave's run, with no outcome yet. */
interface InFlight {
  runId: string;
  minerId: string;
}

/** A rollout that has ended but still has miners being changed: its rollback has to wait for their outcomes. */
export class RolloutSettlingError extends Error {
  constructor(
    readonly inFlight: readonly InFlight[],
    /** The rollout's miners: what planning its rollback reads. */
    readonly miners: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * rollbackPlanFor, once the rollout's miners being changed (just after an abort, say) have their
 * outcomes: `onWait` is told how many are left each time that changes. While it waits only those
 * miners' outcomes are read, not the whole rollout's. Gives up, with the plan's error, when none of
 * them has got its outcome for `stallMs` (no worker settles them).
 */
export async function settledRollbackPlan(redis: Redis, rolloutId: string, prefix = DEFAULT_PREFIX, onWait?: (inFlight: number) => void, stallMs = 60_000): ReturnType<typeof rollbackPlanFor> {
  const runs = new RunStore(redis, prefix);
  let told = -1;
  for (;;) {
    let settling: RolloutSettlingError;
    try {
      return await rollbackPlanFor(redis, rolloutId, prefix);
    } catch (err) {
      if (!(err instanceof RolloutSettlingError)) throw err;
      settling = err;
    }
    let left = settling.inFlight;
    let changedAt = Date.now();
    while (left.length) {
      if (left.length !== told) onWait?.((told = left.length));
      if (Date.now() - changedAt > stallMs) throw settling;
      await new Promise((res) => setTimeout(res, 300));
      const still = (await Promise.all(left.map(async (m) => ((await runs.getOutcome(m.runId, m.minerId)) ? undefined : m)))).filter((m) => m !== undefined);
      if (still.length !== left.length) [left, changedAt] = [still, Date.now()];
    }
  }
}

function restoreSpec(spec: MutationSpec, before: unknown): MutationSpec | undefined {
  const b = (before ?? {}) as Record<string, unknown>;
  switch (spec.kind) {
    // The tuner's one target, in the mode it ran in: a hashrate-target rollout of a miner that ran to a
    // power target is undone by that power target.
    case 'power-target':
    case 'hashrate-target':
      if (typeof b['powerTargetWatts'] === 'number') return { kind: 'power-target', watts: b['powerTargetWatts'] };
      return typeof b['hashrateTargetThs'] === 'number' ? { kind: 'hashrate-target', terahashPerSecond: b['hashrateTargetThs'] } : undefined;
    case 'pools': {
      const groups = (b['groups'] as { name: string; quota: number | null; fixedShareRatio: number | null; pools: { url: string; user: string; enabled: boolean }[] }[] | undefined) ?? [];
      if (groups.length === 0) return undefined;
      return {
        kind: 'pools',
        groups: groups.map((g) => ({ name: g.name, ...(g.fixedShareRatio !== null ? { fixedShareRatio: g.fixedShareRatio } : { quota: g.quota ?? 1 }), pools: g.pools })),
      };
    }
    case 'pause':
    case 'resume':
      return b['minerStatus'] === 'PAUSED' ? { kind: 'pause' } : b['minerStatus'] === 'NORMAL' ? { kind: 'resume' } : undefined;
    case 'locate':
      return typeof b['locateOn'] === 'boolean' ? { kind: 'locate', enable: b['locateOn'] } : undefined;
    case 'reboot':
      return undefined;
  }
}

/**
 * A pools rollback's specs with every restored pool given `passwordRef`. A miner never reports its
 * pool passwords, so the pools a rollback restores have none unless the operator names a profile.
 */
export function withPoolPasswordRef(specs: Record<string, MutationSpec>, passwordRef: string): Record<string, MutationSpec> {
  return Object.fromEntries(
    Object.entries(specs).map(([minerId, spec]) => [minerId, spec.kind === 'pools' ? { ...spec, groups: spec.groups.map((g) => ({ ...g, pools: g.pools.map((p) => ({ ...p, passwordRef })) })) } : spec]),
  );
}

// What `npm run chaos` holds a farm's runs to after the disorder: every miner's change made exactly
// once and reported as it happened, every rollback restoring what its rollout changed, every poll run
// with exactly one outcome per miner.
import type { Outcome } from '../fleet/outcome.js';
import type { MutationRecord } from '../sim/control.js';

/** A miner's applied SetPowerTarget writes, counted per miner. */
export function powerWrites(mutations: readonly MutationRecord[]): Map<string, number> {
  const per = new Map<string, number>();
  for (const m of mutations) if (m.method === 'SetPowerTarget' && m.result === 'applied') per.set(m.minerId, (per.get(m.minerId) ?? 0) + 1);
  return per;
}

/** Applied writes per miner between two counts. */
export function writesBetween(before: ReadonlyMap<string, number>, after: ReadonlyMap<string, number>, minerId: string): number {
  return (after.get(minerId) ?? 0) - (before.get(minerId) ?? 0);
}

interface ChangeData {
  change?: string;
  before?: { powerTargetWatts?: number };
  after?: { powerTargetWatts?: number };
}

export interface PhaseFacts {
  /** Miners, in inventory order. */
  minerIds: readonly string[];
  /** The rollout's end state ('completed' expected). */
  state: string | undefined;
  /** Every outcome of the rollout's waves. */
  outcomes: readonly Outcome[];
  /** Each miner's power target before the phase, and the one it was to reach. */
  from: ReadonlyMap<string, number>;
  to: ReadonlyMap<string, number>;
  /** The miner's applied writes during the phase. */
  writes: (minerId: string) => number;
  /** The miner's power target after the phase. */
  now: ReadonlyMap<string, number>;
  /** Redis may have come back without its last second of writes (--power-loss). */
  powerLoss: boolean;
  /**
   * Miners the phase leaves alone: in a rollback, those whose rollout change was reported `unchanged`
   * (journal lost), which it therefore does not restore. They must get no outcome and no write.
   */
  leftAlone?: ReadonlySet<string>;
}

export interface Verdict {
  violations: string[];
  /** Miners whose change's record was lost with Redis's last second (README: `appendfsync always`). */
  journalLost: string[];
}

/**
 * A rollout (or rollback) after the disorder: it completed; each miner has exactly one outcome, OK,
 * `applied` from its value before to its target (or `unchanged` when it was there already), made with
 * exactly one write; and the miner now runs its target. Under --power-loss, a miner whose write landed
 * but whose journal record Redis lost reads back as `unchanged` with its new value as before: the
 * documented limit of `appendfsync everysec`, listed apart from the violations.
 */
export function checkChange(f: PhaseFacts): Verdict {
  const violations: string[] = [];
  const journalLost: string[] = [];
  if (f.state !== 'completed') violations.push(`ended ${f.state ?? 'unknown'}, not completed`);
  const byMiner = new Map<string, Outcome[]>();
  for (const o of f.outcomes) byMiner.set(o.minerId, [...(byMiner.get(o.minerId) ?? []), o]);
  for (const id of f.minerIds) {
    const outs = byMiner.get(id) ?? [];
    const writes = f.writes(id);
    const from = f.from.get(id);
    const to = f.to.get(id);
    if (f.leftAlone?.has(id)) {
      if (outs.length || writes || f.now.get(id) !== from) violations.push(`${id}: left alone by this phase, yet ${outs.length} outcomes, ${writes} writes, runs ${f.now.get(id)} W (was ${from} W)`);
      continue;
    }
    if (f.now.get(id) !== to) violations.push(`${id}: runs ${f.now.get(id)} W, not its target ${to} W`);
    if (outs.length !== 1) {
      violations.push(`${id}: ${outs.length} outcomes`);
      continue;
    }
    const o = outs[0] as Outcome;
    const d = (o.data ?? {}) as ChangeData;
    const said = `${o.code} ${d.change ?? '-'} ${d.before?.powerTargetWatts ?? '-'}→${d.after?.powerTargetWatts ?? '-'} W`;
    const expected = from === to ? { change: 'unchanged', writes: 0 } : { change: 'applied', writes: 1 };
    if (f.powerLoss && expected.change === 'applied' && o.code === 'OK' && d.change === 'unchanged' && d.before?.powerTargetWatts === to && writes === 1) {
      journalLost.push(id);
      continue;
    }
    if (o.code !== 'OK' || d.change !== expected.change || d.before?.powerTargetWatts !== from || d.after?.powerTargetWatts !== to) {
      violations.push(`${id}: outcome ${said}, expected OK ${expected.change} ${from}→${to} W`);
    }
    if (writes !== expected.writes) violations.push(`${id}: written ${writes} times, expected ${expected.writes} (outcome ${said})`);
  }
  return { violations, journalLost };
}

/**
 * A poll run: exactly one outcome per miner of its total; all OK unless the miners themselves were
 * disordered (then any code, still one each).
 */
export function checkPollRun(runId: string, total: number, outcomes: readonly Outcome[], minerIds: readonly string[], allOk: boolean): string[] {
  const problems: string[] = [];
  const ids = new Set(outcomes.map((o) => o.minerId));
  if (outcomes.length !== total || ids.size !== total) problems.push(`${runId}: ${outcomes.length} outcomes for ${ids.size} miners, of ${total}`);
  const missing = minerIds.filter((id) => !ids.has(id));
  if (total === minerIds.length && missing.length) problems.push(`${runId}: no outcome for ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`);
  const notOk = outcomes.filter((o) => o.code !== 'OK');
  if (allOk && notOk.length) problems.push(`${runId}: ${notOk.length} not OK (${notOk.slice(0, 3).map((o) => `${o.minerId} ${o.code}`).join(', ')})`);
  return problems;
}

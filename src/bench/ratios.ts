// The benchmark's ratios, (a)/(b) and (c)/(a) per size and phase, from the runs of every round.
import type { ModeResult } from './measure.js';

/** The middle item by `by` (the upper middle for an even count). */
function middle<T>(items: readonly T[], by: (item: T) => number): T | undefined {
  return [...items].sort((x, y) => by(x) - by(y))[Math.floor(items.length / 2)];
}

/** The run with the median duration. */
export function median(runs: ModeResult[]): ModeResult | undefined {
  return middle(runs, (r) => r.durationMs);
}

/** A process's steady polls become one result: the median poll, carrying every steady poll's time. */
export function collapseSteady(results: ModeResult[]): ModeResult[] {
  const steady = results.filter((r) => r.label.endsWith(' steady'));
  const chosen = median(steady);
  if (!chosen) return results;
  return [...results.filter((r) => !steady.includes(r)), { ...chosen, steadyPollsMs: steady.map((r) => r.durationMs) }];
}

export type Ratios = Record<string, number>;

const ratio = (x: number, y: number) => Math.round((x / y) * 100) / 100;

/** (a)/(b) and (c)/(a) per size and phase from one result per mode. (a) is its fastest thread setting. */
export function ratiosFor(chosen: ModeResult[]): Ratios {
  const out: Ratios = {};
  for (const n of [...new Set(chosen.map((r) => r.n))]) {
    const atN = chosen.filter((r) => r.n === n);
    // (c)'s first poll is compared with (a)'s cold and warm ones, its steady figure with (a)'s.
    const naiveFor = (mode: string, phase: string) => atN.find((r) => r.mode === mode && r.label.endsWith(' steady') === (phase === 'steady'));
    for (const phase of ['cold', 'warm', 'steady']) {
      const naive = naiveFor('naive', phase);
      const naiveOwn = naiveFor('naive-own', phase);
      const a = atN.filter((r) => r.mode === 'pipeline' && r.label.endsWith(phase)).sort((x, y) => x.durationMs - y.durationMs)[0];
      const bare = atN.find((r) => r.mode === 'bare' && r.label.endsWith(phase));
      if (a && bare) out[`n=${n} ${phase}: (a)/(b) time`] = ratio(a.durationMs, bare.durationMs);
      if (a && naive) out[`n=${n} ${phase}: (c)/(a) time`] = ratio(naive.durationMs, a.durationMs);
      if (a && naiveOwn) out[`n=${n} ${phase}: (c2)/(a) time`] = ratio(naiveOwn.durationMs, a.durationMs);
    }
  }
  return out;
}

/**
 * The ratios three ways, from every round's results: with each mode's median round; with its fastest
 * round (on a shared VM noise only ever slows a run down, so the fastest round is a fair estimate
 * too); and paired, the median over rounds of each round's own ratio (the modes of one round run back
 * to back, so a slow spell of the machine weighs on both sides of a ratio instead of on one).
 */
export function ratiosOf(runs: ModeResult[]): { ratios: Ratios; bestRatios: Ratios; pairedRatios: Ratios } {
  const timed = runs.filter((r) => !r.label.includes('blackholed'));
  const byLabel = new Map<string, ModeResult[]>();
  for (const r of timed) byLabel.set(r.label, [...(byLabel.get(r.label) ?? []), r]);
  const pick = (choose: (rs: ModeResult[]) => ModeResult | undefined) =>
    ratiosFor([...byLabel.values()].map(choose).filter((r): r is ModeResult => r !== undefined));
  const fastest = (rs: ModeResult[]) => [...rs].sort((x, y) => x.durationMs - y.durationMs)[0];
  // Runs by round. Files written before runs carried their round: a label's k-th run is its round k.
  const runsOfLabel = new Map<string, number>();
  const byRound = new Map<number, ModeResult[]>();
  for (const r of timed) {
    const kth = (runsOfLabel.get(r.label) ?? 0) + 1;
    runsOfLabel.set(r.label, kth);
    const round = r.round ?? kth;
    byRound.set(round, [...(byRound.get(round) ?? []), r]);
  }
  const perRound = new Map<string, number[]>();
  for (const roundRuns of byRound.values()) {
    for (const [key, value] of Object.entries(ratiosFor(roundRuns))) perRound.set(key, [...(perRound.get(key) ?? []), value]);
  }
  const pairedRatios: Ratios = {};
  for (const [key, values] of perRound) pairedRatios[key] = middle(values, (v) => v) as number;
  return { ratios: pick(median), bestRatios: pick(fastest), pairedRatios };
}


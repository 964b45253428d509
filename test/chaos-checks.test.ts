// `npm run chaos`'s checks: what they accept, and each lie about a miner they must catch.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { checkChange, checkPollRun, powerWrites, writesBetween, type PhaseFacts } from '../src/chaos/checks.js';
import type { Outcome } from '../src/fleet/outcome.js';

const ids = ['m1', 'm2', 'm3'];

function outcome(minerId: string, data: unknown, code: Outcome['code'] = 'OK'): Outcome {
  return { runId: 'ro-w0', minerId, host: '127.0.0.1', port: 50051, operation: 'power-target', status: code === 'OK' ? 'ok' : 'failed', code, attempts: 1, jobAttempts: 1, durationMs: 5, finishedAt: '', transport: 'plaintext', data };
}
const applied = (id: string, from: number, to: number) => outcome(id, { change: 'applied', before: { powerTargetWatts: from }, after: { powerTargetWatts: to }, verified: true });

/** m1 and m2 go from 3000 W to 2500 W; m3 is there already. */
function facts(over: Partial<PhaseFacts> = {}): PhaseFacts {
  return {
    minerIds: ids,
    state: 'completed',
    outcomes: [applied('m1', 3000, 2500), applied('m2', 3000, 2500), outcome('m3', { change: 'unchanged', before: { powerTargetWatts: 2500 }, after: { powerTargetWatts: 2500 }, verified: true })],
    from: new Map([['m1', 3000], ['m2', 3000], ['m3', 2500]]),
    to: new Map(ids.map((id) => [id, 2500])),
    now: new Map(ids.map((id) => [id, 2500])),
    writes: (id) => (id === 'm3' ? 0 : 1),
    powerLoss: false,
    ...over,
  };
}

describe('chaos: a change phase', () => {
  it('passes when each miner was written once, reports its real before, and runs its target', () => {
    expect(checkChange(facts())).toEqual({ violations: [], journalLost: [] });
  });

  it('catches a double write, a missing or second outcome, a wrong before, a miner off target, a rollout not completed', () => {
    expect(checkChange(facts({ writes: () => 1 })).violations).toEqual(['m3: written 1 times, expected 0 (outcome OK unchanged 2500→2500 W)']);
    expect(checkChange(facts({ writes: (id) => (id === 'm1' ? 2 : id === 'm2' ? 1 : 0) })).violations).toEqual(['m1: written 2 times, expected 1 (outcome OK applied 3000→2500 W)']);
    const [o1, o2, o3] = facts().outcomes as Outcome[];
    expect(checkChange(facts({ outcomes: [o1 as Outcome, o3 as Outcome] })).violations).toEqual(['m2: 0 outcomes']);
    expect(checkChange(facts({ outcomes: [o1 as Outcome, o2 as Outcome, o2 as Outcome, o3 as Outcome] })).violations).toEqual(['m2: 2 outcomes']);
    expect(checkChange(facts({ outcomes: [applied('m1', 2500, 2500), o2 as Outcome, o3 as Outcome] })).violations).toEqual(['m1: outcome OK applied 2500→2500 W, expected OK applied 3000→2500 W']);
    expect(checkChange(facts({ now: new Map([['m1', 3000], ['m2', 2500], ['m3', 2500]]) })).violations).toEqual(['m1: runs 3000 W, not its target 2500 W']);
    expect(checkChange(facts({ outcomes: [outcome('m1', undefined, 'MINER_TIMEOUT'), o2 as Outcome, o3 as Outcome] })).violations[0]).toBe('m1: outcome MINER_TIMEOUT - -→- W, expected OK applied 3000→2500 W');
    expect(checkChange(facts({ state: 'halted' })).violations).toEqual(['ended halted, not completed']);
  });

  it('under --power-loss, a write whose journal record Redis lost (read back as unchanged at its new value) is a note, not a violation', () => {
    const lost = outcome('m1', { change: 'unchanged', before: { powerTargetWatts: 2500 }, after: { powerTargetWatts: 2500 }, verified: true });
    const [, o2, o3] = facts().outcomes as Outcome[];
    const outcomes = [lost, o2 as Outcome, o3 as Outcome];
    expect(checkChange(facts({ outcomes, powerLoss: true }))).toEqual({ violations: [], journalLost: ['m1'] });
    expect(checkChange(facts({ outcomes })).violations).toEqual(['m1: outcome OK unchanged 2500→2500 W, expected OK applied 3000→2500 W']);
    // Lost or not, a second write is a violation.
    expect(checkChange(facts({ outcomes, powerLoss: true, writes: (id) => (id === 'm1' ? 2 : id === 'm2' ? 1 : 0) })).violations).toHaveLength(2);
  });

  it('a rollback leaves alone the miners whose rollout change was reported unchanged: no outcome, no write, still at the value it has', () => {
    const [, o2] = facts().outcomes as Outcome[];
    const leftAlone = new Set(['m1', 'm3']);
    // m1 and m3 stay at 2500 W, m2 goes to 2500 W.
    const base = { leftAlone, outcomes: [o2 as Outcome], from: new Map([['m1', 2500], ['m2', 3000], ['m3', 2500]]), writes: (id: string) => (id === 'm2' ? 1 : 0) };
    expect(checkChange(facts(base)).violations).toEqual([]);
    expect(checkChange(facts({ ...base, writes: () => 1 })).violations).toEqual(['m1: left alone by this phase, yet 0 outcomes, 1 writes, runs 2500 W (was 2500 W)', 'm3: left alone by this phase, yet 0 outcomes, 1 writes, runs 2500 W (was 2500 W)']);
  });

  it('counts applied writes per miner between two reads of the simulator', () => {
    const w = (minerId: string, result: 'applied' | 'rejected', method = 'SetPowerTarget') => ({ minerId, method, request: {}, atMs: 0, result });
    const before = powerWrites([w('m1', 'applied')]);
    const after = powerWrites([w('m1', 'applied'), w('m1', 'applied'), w('m2', 'rejected'), w('m2', 'applied', 'SetHashrateTarget')]);
    expect([writesBetween(before, after, 'm1'), writesBetween(before, after, 'm2')]).toEqual([1, 0]);
  });
});

describe('chaos: a poll run', () => {
  const polled = (id: string, code: Outcome['code'] = 'OK') => ({ ...outcome(id, {}, code), runId: 'chaos-1-1', operation: 'poll' });
  it('wants one outcome per miner, all OK unless the miners were disordered too', () => {
    expect(checkPollRun('r', 3, ids.map((id) => polled(id)), ids, true)).toEqual([]);
    expect(checkPollRun('r', 3, [polled('m1'), polled('m2')], ids, true)).toEqual(['r: 2 outcomes for 2 miners, of 3', 'r: no outcome for m3']);
    expect(checkPollRun('r', 3, [polled('m1'), polled('m2', 'MINER_UNREACHABLE'), polled('m3')], ids, true)).toEqual(['r: 1 not OK (m2 MINER_UNREACHABLE)']);
    expect(checkPollRun('r', 3, [polled('m1'), polled('m2', 'MINER_UNREACHABLE'), polled('m3')], ids, false)).toEqual([]);
  });
});

describe('npm run chaos', () => {
  it('refuses a bad flag value before starting anything, naming the flag and the value', () => {
    const r = spawnSync(process.execPath, ['dist/chaos/run.js', '--seconds', '5s'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--seconds must be a whole number from 10 to 3600, got "5s"');
  });
});

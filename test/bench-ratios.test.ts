// The benchmark's ratios: by medians, by fastest rounds, and paired (each round's own ratio, then the median).
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import type { ModeResult } from '../src/bench/measure.js';
import { collapseSteady, ratiosOf } from '../src/bench/ratios.js';

function run(mode: string, label: string, durationMs: number, round?: number): ModeResult {
  return { mode, label, n: 1000, durationMs, minersPerS: 0, p50Ms: 0, p99Ms: 0, peakRssMb: 0, cpuMs: 0, counts: {}, ...(round ? { round } : {}) };
}

// Three rounds; the machine was slow in round 2 for both (a) and (b).
const rounds: [number, number, number][] = [
  [1, 1200, 1000],
  [2, 2400, 2000],
  [3, 1500, 1100],
];

function fleet(withRounds: boolean): ModeResult[] {
  return rounds.flatMap(([round, a, b]) => [
    run('pipeline', '(a) bos-fleet --threads 0 n=1000 warm', a, withRounds ? round : undefined),
    run('bare', '(b) bare grpc-js n=1000 warm', b, withRounds ? round : undefined),
    run('naive', '(c) naive peer loop n=1000', a * 5, withRounds ? round : undefined),
  ]);
}

describe('benchmark ratios', () => {
  it('pairs each round’s (a) with that round’s (b) and (c), then takes the median', () => {
    const { ratios, bestRatios, pairedRatios } = ratiosOf(fleet(true));
    // Medians of each mode: (a) 1500 / (b) 1100; fastest: 1200 / 1000.
    expect(ratios['n=1000 warm: (a)/(b) time']).toBe(1.36);
    expect(bestRatios['n=1000 warm: (a)/(b) time']).toBe(1.2);
    // Per round 1.2, 1.2, 1.36 → median 1.2.
    expect(pairedRatios['n=1000 warm: (a)/(b) time']).toBe(1.2);
    expect(pairedRatios['n=1000 warm: (c)/(a) time']).toBe(5);
  });

  it('reads the rounds of a file written before runs carried them from the order of the runs', () => {
    expect(ratiosOf(fleet(false)).pairedRatios).toEqual(ratiosOf(fleet(true)).pairedRatios);
  });

  it('compares (c)’s steady polls with (a)’s and (b)’s steady ones, and its first poll with cold and warm', () => {
    const runs = [
      run('pipeline', '(a) bos-fleet --threads 0 n=1000 cold', 3000, 1),
      run('pipeline', '(a) bos-fleet --threads 0 n=1000 warm', 2000, 1),
      run('pipeline', '(a) bos-fleet --threads 0 n=1000 steady', 1500, 1),
      run('bare', '(b) bare grpc-js n=1000 warm', 1600, 1),
      run('bare', '(b) bare grpc-js n=1000 steady', 1250, 1),
      run('naive', '(c) naive peer loop n=1000', 7000, 1),
      run('naive', '(c) naive peer loop n=1000 steady', 6000, 1),
    ];
    const { ratios } = ratiosOf(runs);
    expect(ratios).toEqual({
      'n=1000 cold: (c)/(a) time': 2.33,
      'n=1000 warm: (a)/(b) time': 1.25,
      'n=1000 warm: (c)/(a) time': 3.5,
      'n=1000 steady: (a)/(b) time': 1.2,
      'n=1000 steady: (c)/(a) time': 4,
    });
  });

  it('reports a process’s steady polls as their median poll, with every poll’s time', () => {
    const polls = [run('bare', '(b) n=1000 cold', 3000), run('bare', '(b) n=1000 warm', 1700), ...[1400, 1200, 1900].map((ms) => run('bare', '(b) n=1000 steady', ms))];
    const out = collapseSteady(polls);
    expect(out.map((r) => [r.label, r.durationMs])).toEqual([
      ['(b) n=1000 cold', 3000],
      ['(b) n=1000 warm', 1700],
      ['(b) n=1000 steady', 1400],
    ]);
    expect(out[2]?.steadyPollsMs).toEqual([1400, 1200, 1900]);
    expect(collapseSteady(polls.slice(0, 2))).toEqual(polls.slice(0, 2));
  });

  it('leaves the blackholed runs out of every ratio', () => {
    const runs = [...fleet(true), run('pipeline', '(a) 10% blackholed n=1000 warm', 100, 1)];
    expect(ratiosOf(runs)).toEqual(ratiosOf(fleet(true)));
  });
});

describe('npm run bench: its flags', () => {
  const bench = (...args: string[]) => spawnSync(process.execPath, ['dist/bench/run.js', ...args], { encoding: 'utf8', timeout: 20_000 });

  it('--help prints the usage and runs nothing', () => {
    const r = bench('--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^usage: npm run bench -- \[options\]/);
    expect(r.stdout).toContain('--blackhole-size N');
    expect(r.stdout).toContain('--steady N');
  });

  it.each([
    [['--sizes', '1000,abc'], '--sizes must be a whole number from 1 to 100000, got "abc"'],
    [['--rounds', '0'], '--rounds must be a whole number from 1 to 50, got "0"'],
    [['--modes', 'a,d'], '--modes: unknown mode "d"'],
    [['--threads', '2.5'], '--threads must be a whole number from 0 to 256, got "2.5"'],
    [['--steady', '21'], '--steady must be a whole number from 0 to 20, got "21"'],
    [['--bogus'], "Unknown option '--bogus'"],
  ])('%j is refused before anything starts, naming the flag and the value', (args, message) => {
    const r = bench(...args);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(message);
    expect(r.stdout).toBe('');
  });
});

// `npm run bench`: (a) bos-fleet's full pipeline vs (b) a bare grpc-js client vs (c) the naive peer
// loop, on simulated fleets of 1,000 and 10,000 miners (100,000 with --huge), plus (a) with 10% of
// miners blackholed, twice (breakers closed, then open). Writes bench-results/latest.json.
// `--report FILE` recomputes a results file's ratios (medians, fastest and paired rounds) from its rounds.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PACKAGE_ROOT } from '../core/proto.js';
import { MAX_TIMEOUT_MS, MIN_TIMEOUT_MS } from '../fleet/job.js';
import { startRedisServer } from '../redis/server.js';
import { SimCluster } from '../sim/cluster.js';
import { planFleet } from '../sim/plan.js';
import { watchedCpu, type ModeResult } from './measure.js';
import { median, ratiosOf, type Ratios } from './ratios.js';
import { parsedOrExit, parseFlags, UsageError, wholeNumber } from './script-args.js';
import type { ModeConfig } from './mode.js';

interface BenchArgs {
  sizes: number[];
  threads: number[];
  concurrency: number;
  timeoutMs: number;
  blackholeSize: number;
  /** Which modes to run: a (pipeline), a0 (core alone), b (bare), c (naive), c2 (naive, own connection per call). */
  modes: string[];
  /** Sizes at which only (a) runs (100,000 with --huge: the baselines would take most of an hour). */
  pipelineOnly: number[];
  /** Each mode runs this many times, in rotated order; its reported figure is the median run. */
  rounds: number;
  /** Polls after the warm one whose median is the steady figure; undefined: 3 at sizes up to 1,000, 0 above. */
  steady?: number;
  out: string;
}

const MODES = ['a', 'a0', 'b', 'c', 'c2'];

const USAGE = `usage: npm run bench -- [options]

Polls simulated fleets with (a) bos-fleet's pipeline, (a0) its core alone, (b) a bare grpc-js client,
(c) the naive peer loop and (c2) the naive loop with a connection per call; prints and writes the
figures and the ratios (a)/(b) and (c)/(a).

  --sizes N[,N…]          fleet sizes (default 1000,10000; each 1 to 100,000)
  --huge                  also 100,000 miners, pipeline only, one cold poll
  --modes M[,M…]          of ${MODES.join(',')} (default all)
  --threads N[,N…]        (a)'s --threads values (default 0,2; each 0 to 256)
  --concurrency N         polls in flight, every mode (default 200; 1 to 10,000)
  --timeout-ms N          per-call timeout (default 5000; 100 to 600,000)
  --rounds N              runs of each mode per size, in rotated order; figures are medians (default 3; 1 to 50)
  --steady N              after the warm poll, N more polls in the same process whose median is the
                          steady figure (default 3 at sizes up to 1,000, 0 above; 0 to 20)
  --blackhole-size N      size at which (a) also runs with 10% of miners blackholed (default 1000; 0: never)
  --out FILE              results file (default bench-results/latest.json)
  --report FILE           recompute a results file's ratios from its rounds, run nothing
  -h, --help              this text`;


function parseArgs(argv: string[]): BenchArgs & { help: boolean; report?: string } {
  const values = parseFlags(argv, {
    sizes: { type: 'string' },
    huge: { type: 'boolean' },
    modes: { type: 'string' },
    threads: { type: 'string' },
    concurrency: { type: 'string' },
    'timeout-ms': { type: 'string' },
    rounds: { type: 'string' },
    steady: { type: 'string' },
    'blackhole-size': { type: 'string' },
    out: { type: 'string' },
    report: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  const ints = (flag: string, value: string | undefined, d: number[], min: number, max: number): number[] =>
    value === undefined ? d : value.split(',').map((x) => wholeNumber(flag, x, min, max));
  const sizes = ints('sizes', values.sizes, [1_000, 10_000], 1, 100_000);
  const pipelineOnly: number[] = [];
  if (values.huge) {
    if (!sizes.includes(100_000)) sizes.push(100_000);
    pipelineOnly.push(100_000);
  }
  const modes = (values.modes ?? MODES.join(',')).split(',');
  for (const m of modes) if (!MODES.includes(m)) throw new UsageError(`--modes: unknown mode "${m}" (modes: ${MODES.join(', ')})`);
  return {
    help: values.help ?? false,
    ...(values.report === undefined ? {} : { report: values.report }),
    modes,
    pipelineOnly,
    sizes,
    threads: ints('threads', values.threads, [0, 2], 0, 256),
    concurrency: wholeNumber('concurrency', values.concurrency ?? '200', 1, 10_000),
    timeoutMs: wholeNumber('timeout-ms', values['timeout-ms'] ?? '5000', MIN_TIMEOUT_MS, MAX_TIMEOUT_MS),
    blackholeSize: wholeNumber('blackhole-size', values['blackhole-size'] ?? '1000', 0, 100_000),
    rounds: wholeNumber('rounds', values.rounds ?? '3', 1, 50),
    ...(values.steady === undefined ? {} : { steady: wholeNumber('steady', values.steady, 0, 20) }),
    out: values.out ?? path.join(PACKAGE_ROOT, 'bench-results', 'latest.json'),
  };
}

/**
 * Ctrl-C, SIGTERM, or a reader that went away (`npm run bench | head`): the mode running now is
 * stopped, and main's cleanup (simulator, Redis, temporary directory) runs before the exit.
 */
const interruption = { reason: undefined as string | undefined, exitCode: 0, child: undefined as ChildProcess | undefined };

function interrupt(reason: string, exitCode: number): void {
  if (interruption.reason) return;
  interruption.reason = reason;
  interruption.exitCode = exitCode;
  interruption.child?.kill('SIGTERM');
}

let configSeq = 0;

function runMode(cfg: ModeConfig, dir: string): Promise<ModeResult[]> {
  const configFile = path.join(dir, `mode-${++configSeq}.json`);
  writeFileSync(configFile, JSON.stringify(cfg));
  return new Promise((resolve, reject) => {
    // BOS_FLEET_BENCH_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles each mode's process.
    const nodeArgs = (process.env['BOS_FLEET_BENCH_NODE_ARGS'] ?? '').split(' ').filter(Boolean);
    if (interruption.reason) return reject(new Error(`bench interrupted (${interruption.reason})`));
    const child = spawn(process.execPath, [...nodeArgs, path.join(PACKAGE_ROOT, 'dist', 'bench', 'mode.js'), configFile], { stdio: ['ignore', 'pipe', 'inherit'] });
    interruption.child = child;
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('exit', (code) => {
      interruption.child = undefined;
      if (interruption.reason) return reject(new Error(`bench interrupted (${interruption.reason})`));
      const results = out
        .split('\n')
        .filter((l) => l.startsWith('BENCH '))
        .map((l) => JSON.parse(l.slice(6)) as ModeResult);
      if (code !== 0 || results.length === 0) reject(new Error(`bench mode ${cfg.label} exited with ${code}`));
      else resolve(results);
    });
  });
}

function row(r: ModeResult): string {
  const counts = Object.entries(r.counts)
    .map(([c, n]) => `${c} ${n}`)
    .join(', ');
  return `${r.label.padEnd(40)} ${String(r.n).padStart(7)} ${`${(r.durationMs / 1000).toFixed(2)} s`.padStart(10)} ${String(r.minersPerS).padStart(9)} ${`${r.p50Ms}`.padStart(7)} ${`${r.p99Ms}`.padStart(7)} ${String(r.peakRssMb).padStart(7)} ${String(r.cpuMs).padStart(7)} ${String(r.redisCpuMs ?? 0).padStart(7)} ${String(r.simCpuMs ?? 0).padStart(7)}  ${counts}`;
}

async function main(args: BenchArgs): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-bench-'));
  const redis = await startRedisServer({ dir });
  const results: ModeResult[] = [];
  const simStartMs: Record<string, number> = {};
  console.log(`${'mode'.padEnd(40)} ${'miners'.padStart(7)} ${'time'.padStart(10)} ${'miners/s'.padStart(9)} ${'p50 ms'.padStart(7)} ${'p99 ms'.padStart(7)} ${'RSS MB'.padStart(7)} ${'CPU ms'.padStart(7)} ${'Redis'.padStart(7)} ${'sim'.padStart(7)}  outcomes`);
  // Each mode's process measures, per run, Redis's CPU (the queue's cost that the executor's CPU figure
  // does not show) and the simulator's (it shares the cores with the executor on this machine).
  const summary: ModeResult[] = [];
  const record = (rs: ModeResult[], note = '') => {
    for (const r of rs) {
      results.push(r);
      console.log(row({ ...r, label: r.label + note }));
    }
    return rs;
  };
  try {
    for (const n of args.sizes) {
      const t0 = Date.now();
      const sim = await SimCluster.start({ miners: planFleet({ miners: n, base: '127.20.0.1' }) });
      simStartMs[String(n)] = Date.now() - t0;
      const simPids = sim.pids();
      const targets = sim.miners.map((m) => ({ id: m.id, host: m.host, port: m.port }));
      const watch = { sim: simPids, ...(redis.process.pid === undefined ? {} : { redis: redis.process.pid }) };
      const base = { redisUrl: redis.url, targets, concurrency: args.concurrency, timeoutMs: args.timeoutMs, repeat: 1, watch };
      try {
        const want = (m: string) => args.modes.includes(m) && (m === 'a' || !args.pipelineOnly.includes(n));
        // (a), (a0) and (b) poll the fleet twice in one process: cold (connect, read the version, log in)
        // and warm (a farm's next poll: kept-open channels, known token and version). (c) has nothing
        // to keep: every poll of the naive loop is the same.
        const twice = args.pipelineOnly.includes(n) ? { repeat: 1, phases: ['cold'] } : { repeat: 2, phases: ['cold', 'warm'] };
        // Then the steady polls (the regular poll of a worker that has run a while: compiled, heap grown),
        // in every mode, the naive loops too (their first poll in a fresh process is a cold one of sorts).
        const steadyPolls = args.pipelineOnly.includes(n) ? 0 : (args.steady ?? (n <= 1_000 ? 3 : 0));
        const steady = steadyPolls > 0 ? { steady: steadyPolls } : {};
        const configs: ModeConfig[] = [
          ...(want('a') ? args.threads : []).map((threads): ModeConfig => ({ ...base, ...twice, ...steady, mode: 'pipeline', label: `(a) bos-fleet --threads ${threads} n=${n}`, threads })),
          ...(want('a0') ? [{ ...base, ...twice, ...steady, mode: 'core', label: `(a0) core alone, no queue n=${n}`, threads: 0 } satisfies ModeConfig] : []),
          ...(want('b') ? [{ ...base, ...twice, ...steady, mode: 'bare', label: `(b) bare grpc-js n=${n}`, threads: 0 } satisfies ModeConfig] : []),
          ...(want('c') ? [{ ...base, ...steady, mode: 'naive', label: `(c) naive peer loop n=${n}`, threads: 0 } satisfies ModeConfig] : []),
          ...(want('c2') ? [{ ...base, ...steady, mode: 'naive-own', label: `(c2) naive, own connection/call n=${n}`, threads: 0 } satisfies ModeConfig] : []),
        ];
        // Warm-up: untimed bare polls of every miner until the simulator's CPU per pass settles (JIT, heap
        // sizing), so no mode pays the simulator's warm-up. At most 4 passes; none at pipeline-only sizes
        // (a pass over 100,000 miners takes minutes, and (a) has nothing there to be compared with).
        for (let pass = 0, last = Infinity; pass < (args.pipelineOnly.includes(n) ? 0 : 4); pass++) {
          const simUse = watchedCpu({ sim: simPids });
          await runMode({ ...base, mode: 'bare', label: `warm-up n=${n}`, threads: 0 }, dir);
          const used = simUse().simCpuMs ?? 0;
          console.log(`warm-up pass ${pass + 1} n=${n}: simulator CPU ${used} ms`);
          if (used > last * 0.9) break;
          last = used;
        }
        // Rounds, each in a rotated order (no mode always runs first or last); a mode's figure is its median round.
        const runs = new Map<string, ModeResult[]>();
        const rounds = args.pipelineOnly.includes(n) ? 1 : args.rounds;
        for (let round = 0; round < rounds; round++) {
          for (let i = 0; i < configs.length; i++) {
            const cfg = configs[(i + round) % configs.length] as ModeConfig;
            const rs = (await runMode(cfg, dir)).map((r) => ({ ...r, round: round + 1 }));
            for (const r of record(rs, rounds > 1 ? ` [round ${round + 1}]` : '')) runs.set(r.label, [...(runs.get(r.label) ?? []), r]);
          }
        }
        summary.push(...[...runs.values()].map((rs) => median(rs)).filter((r): r is ModeResult => r !== undefined));
        if (n === args.blackholeSize) {
          const hole = targets.filter((_, i) => i % 10 === 0);
          for (const t of hole) await sim.setFaults(t.id, { blackhole: true });
          summary.push(...record(await runMode({ ...base, repeat: 2, mode: 'pipeline', label: `(a) 10% blackholed n=${n}`, threads: args.threads[0] ?? 0 }, dir)));
        }
      } finally {
        await sim.close();
      }
    }
  } finally {
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`\nmedian of ${args.rounds} rounds (1 at pipeline-only sizes):`);
  for (const r of summary) console.log(row(r));
  const { ratios, bestRatios, pairedRatios } = ratiosOf(results);
  printRatios(ratios, bestRatios, pairedRatios);
  mkdirSync(path.dirname(args.out), { recursive: true });
  writeFileSync(
    args.out,
    JSON.stringify({ date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, args, simStartMs, summary, ratios, bestRatios, pairedRatios, runs: results }, null, 2) + '\n',
  );
  console.log(`written to ${args.out}`);
}

function printRatios(ratios: Ratios, bestRatios: Ratios, pairedRatios: Ratios): void {
  console.log('\nratios (time, medians):', JSON.stringify(ratios));
  console.log('ratios (time, fastest rounds):', JSON.stringify(bestRatios));
  console.log('ratios (time, paired: median of each round\'s ratio):', JSON.stringify(pairedRatios));
}

/** `--report FILE`: recomputes the ratios of a results file from its rounds and writes them back. */
function report(file: string): void {
  const saved = JSON.parse(readFileSync(file, 'utf8')) as { runs: ModeResult[] } & Record<string, unknown>;
  const { ratios, bestRatios, pairedRatios } = ratiosOf(saved.runs);
  printRatios(ratios, bestRatios, pairedRatios);
  writeFileSync(file, JSON.stringify({ ...saved, ratios, bestRatios, pairedRatios }, null, 2) + '\n');
}

const parsed = parsedOrExit('bench', USAGE, () => parseArgs(process.argv.slice(2)));
if (parsed.help) console.log(USAGE);
else if (parsed.report !== undefined) report(parsed.report);
else {
  process.once('SIGINT', () => interrupt('SIGINT', 130));
  process.once('SIGTERM', () => interrupt('SIGTERM', 143));
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') interrupt('output closed', 0);
  });
  try {
    await main(parsed);
  } catch (err) {
    if (!interruption.reason) throw err;
  }
  if (interruption.reason) {
    console.error(`bench: stopped (${interruption.reason}); simulator, Redis and temporary files cleaned up, no results written`);
    process.exitCode = interruption.exitCode;
  }
}

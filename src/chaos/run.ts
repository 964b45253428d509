// `npm run chaos`: a staged power-target rollout and its rollback, then a poll schedule, each carried
// out by `bos-fleet worker` processes on a simulated fleet while workers and Redis are killed, frozen
// and restarted at random (disorder.ts); then every miner is checked (checks.ts): each change made
// exactly once and reported as made, each rollback restoring it, each poll run with one outcome per
// miner. Prints what it did and any violation; exits 1 on a violation.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { DEFAULT_PREFIX } from '../fleet/keys.js';
import type { Outcome } from '../fleet/outcome.js';
import { RunStore } from '../fleet/run-store.js';
import { rolloutReport } from '../rollout/create.js';
import { TERMINAL, waveRunId } from '../rollout/store.js';
import { SimCluster } from '../sim/cluster.js';
import type { MinerFaults } from '../sim/faults.js';
import { SIM_PASSWORD, SIM_USERNAME } from '../sim/miner.js';
import { inventoryCsv, planFleet } from '../sim/plan.js';
import { parsedOrExit, parseFlags, UsageError, wholeNumber } from '../bench/script-args.js';
import { checkChange, checkPollRun, powerWrites, writesBetween } from './checks.js';
import { CLI, Disorder, type Events } from './disorder.js';

const SCENARIOS = ['rollout', 'schedule'];
const USAGE = `usage: npm run chaos -- [options]

Runs a power-target rollout and its rollback, then a poll schedule, on a simulated fleet whose
bos-fleet workers and Redis are killed, frozen and restarted at random; then checks every miner.

  --miners N           fleet size (default 600; 10 to 20,000)
  --seconds N          disorder per scenario phase, s (default 90; 10 to 3,600)
  --seed N             the random choices (default 1)
  --workers N          bos-fleet worker processes (default 2; 1 to 8)
  --scenarios S[,S…]   of ${SCENARIOS.join(',')} (default both)
  --power-loss         Redis also comes back from an AOF up to a second old, as after a power failure
  --miner-faults       miners also lose write replies, reboot and drop their connections
  --out FILE           also write the report as JSON
  -h, --help           this text`;

interface ChaosArgs {
  miners: number;
  seconds: number;
  seed: number;
  workers: number;
  scenarios: string[];
  powerLoss: boolean;
  minerFaults: boolean;
  out?: string;
}

function parseArgs(argv: string[]): ChaosArgs & { help: boolean } {
  const values = parseFlags(argv, {
    miners: { type: 'string' },
    seconds: { type: 'string' },
    seed: { type: 'string' },
    workers: { type: 'string' },
    scenarios: { type: 'string' },
    'power-loss': { type: 'boolean' },
    'miner-faults': { type: 'boolean' },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  const scenarios = (values.scenarios ?? SCENARIOS.join(',')).split(',');
  for (const s of scenarios) if (!SCENARIOS.includes(s)) throw new UsageError(`--scenarios: unknown scenario "${s}" (scenarios: ${SCENARIOS.join(', ')})`);
  return {
    help: values.help ?? false,
    miners: wholeNumber('miners', values.miners ?? '600', 10, 20_000),
    seconds: wholeNumber('seconds', values.seconds ?? '90', 10, 3_600),
    seed: wholeNumber('seed', values.seed ?? '1', 0, 2 ** 31 - 1),
    workers: wholeNumber('workers', values.workers ?? '2', 1, 8),
    scenarios,
    powerLoss: values['power-loss'] ?? false,
    minerFaults: values['miner-faults'] ?? false,
    ...(values.out === undefined ? {} : { out: values.out }),
  };
}

/** A seeded generator (mulberry32): the same --seed makes the same choices. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (line: string) => console.log(`${new Date().toISOString().slice(11, 19)} ${line}`);
const cli = promisify(execFile);

interface PhaseReport {
  phase: string;
  id: string;
  state?: string;
  seconds: number;
  events: Events;
  violations: string[];
  notes: string[];
}

/** Power target the rollout sets: one every simulated model accepts, none runs by default. */
const TARGET_W = 2_500;
/** How long a phase may take to end once the disorder has stopped. */
const SETTLE_MS = 300_000;

async function main(args: ChaosArgs, dir: string, cleanups: (() => Promise<void>)[]): Promise<PhaseReport[]> {
  // Replies take 100–300 ms (a busy farm's network), so jobs are in flight when their worker dies.
  const faultsOf = (index: number): MinerFaults => ({ slow: { latencyMs: 100 + (index % 5) * 50 } });
  const specs = planFleet({ miners: args.miners, base: '127.70.0.1' }).map((m) => ({ ...m, faults: faultsOf(m.index) }));
  const sim = await SimCluster.start({ miners: specs });
  cleanups.push(() => sim.close());
  const indexOf = new Map(specs.map((m) => [m.id, m.index]));
  const minerIds = specs.map((m) => m.id);
  const inventory = path.join(dir, 'inventory.csv');
  const credentials = path.join(dir, 'credentials.json');
  writeFileSync(inventory, inventoryCsv(specs));
  writeFileSync(credentials, JSON.stringify({ default: { username: SIM_USERNAME, password: SIM_PASSWORD } }), { mode: 0o600 });
  const random = seeded(args.seed);
  const disorder = new Disorder({
    dir, sim, workers: args.workers, powerLoss: args.powerLoss, minerFaults: args.minerFaults, gapMs: 3_000, random, log,
    faultsOf: (id) => faultsOf(indexOf.get(id) ?? 0),
    workerArgs: ['--credentials', credentials, '--concurrency', '30', '--lock-ms', '4000', '--report-every', '0'],
  });
  await disorder.start();
  cleanups.unshift(() => disorder.stop());
  const redis = new Redis(disorder.url, { maxRetriesPerRequest: null });
  redis.on('error', () => undefined);
  cleanups.unshift(async () => void redis.disconnect());
  const store = new RunStore(redis, DEFAULT_PREFIX);
  const where = ['--redis', disorder.url];
  const powerTargets = async () => new Map(await Promise.all(minerIds.map(async (id) => [id, (await sim.state(id)).powerTargetW] as const)));
  const reports: PhaseReport[] = [];

  const change = async (phase: string, startArgs: string[], to: (id: string) => number, leftAlone?: ReadonlySet<string>): Promise<{ id: string; journalLost: string[] }> => {
    const from = await powerTargets();
    const writesBefore = powerWrites(await sim.mutations());
    const started = Date.now();
    const { stdout } = await cli(process.execPath, [CLI, ...startArgs, ...where, '--credentials', credentials, '--max-failure-rate', '50%', '--yes', '--json']);
    const id = (JSON.parse(stdout) as { rolloutId: string }).rolloutId;
    log(`${phase} ${id} started`);
    let report = await rolloutReport(redis, id);
    const ended = async () => {
      report = (await rolloutReport(redis, id)) ?? report;
      return report !== undefined && TERMINAL.includes(report.state);
    };
    const events = await disorder.run(args.seconds * 1_000, ended);
    log(`${phase}: disorder over (${JSON.stringify(events)}), waiting for its end`);
    for (const quiet = Date.now(); !(await ended()) && Date.now() - quiet < SETTLE_MS; ) await sleep(1_000);
    const outcomes: Outcome[] = [];
    for (let w = 0; w < (report?.waves.length ?? 0); w++) outcomes.push(...(await store.getOutcomes(waveRunId(id, w))));
    const writesAfter = powerWrites(await sim.mutations());
    const verdict = checkChange({
      minerIds, state: report?.state, outcomes, from, to: new Map(minerIds.map((m) => [m, to(m)])), now: await powerTargets(),
      writes: (m) => writesBetween(writesBefore, writesAfter, m), powerLoss: args.powerLoss, ...(leftAlone ? { leftAlone } : {}),
    });
    const notes = verdict.journalLost.length ? [`${verdict.journalLost.length} miners' change records lost with Redis's last second (--power-loss; see appendfsync in the README): ${verdict.journalLost.slice(0, 5).join(', ')}`] : [];
    if (leftAlone?.size) notes.push(`${leftAlone.size} miners not rolled back: their rollout change was reported unchanged (its record lost), so they stay at its value`);
    reports.push({ phase, id, ...(report ? { state: report.state } : {}), seconds: Math.round((Date.now() - started) / 1_000), events, violations: verdict.violations, notes });
    log(`${phase} ${id}: ${report?.state}, ${outcomes.length} outcomes, ${verdict.violations.length} violations`);
    return { id, journalLost: verdict.journalLost };
  };

  if (args.scenarios.includes('rollout')) {
    const original = await powerTargets();
    const rollout = await change('rollout', ['rollout', 'start', '--inventory', inventory, '--power-target', String(TARGET_W), '--waves', '10%,40%,100%'], () => TARGET_W);
    await change('rollback', ['rollout', 'rollback', rollout.id, '--waves', '20%,100%'], (m) => original.get(m) ?? 0, new Set(rollout.journalLost));
  }
  if (args.scenarios.includes('schedule')) reports.push(await pollSchedule(args, disorder, store, { inventory, where, minerIds }));
  return reports;
}

/** A poll schedule every 10 s under the disorder, then 30 s without it; every run it started is checked. */
async function pollSchedule(args: ChaosArgs, disorder: Disorder, store: RunStore, f: { inventory: string; where: string[]; minerIds: string[] }): Promise<PhaseReport> {
  const id = `chaos-${args.seed}`;
  const started = Date.now();
  await cli(process.execPath, [CLI, 'schedule', 'add', 'poll', '--inventory', f.inventory, '--every', '10s', '--id', id, '--keep-runs', '10000', ...f.where]);
  log(`schedule ${id} added`);
  const events = await disorder.run(args.seconds * 1_000, async () => false);
  log(`schedule: disorder over (${JSON.stringify(events)}); 30 s more without it (a run that lost jobs is repaired at the next tick)`);
  await sleep(30_000);
  await cli(process.execPath, [CLI, 'schedule', 'remove', id, ...f.where]);
  const violations: string[] = [];
  let runs = (await store.listRuns(10_000)).filter((r) => r.series === id);
  for (const quiet = Date.now(); Date.now() - quiet < SETTLE_MS; await sleep(1_000)) {
    runs = (await store.listRuns(10_000)).filter((r) => r.series === id);
    const counts = await Promise.all(runs.map((r) => store.getCounts(r.runId)));
    if (runs.every((r, i) => (counts[i]?.done ?? 0) >= r.total)) break;
  }
  if (runs.length === 0) violations.push('the schedule started no run');
  for (const r of runs) violations.push(...checkPollRun(r.runId, r.total, await store.getOutcomes(r.runId), f.minerIds, !args.minerFaults));
  log(`schedule ${id}: ${runs.length} runs, ${violations.length} violations`);
  return { phase: 'poll schedule', id, seconds: Math.round((Date.now() - started) / 1_000), events, violations, notes: [`${runs.length} runs (a tick is skipped while the run before it is unfinished)`] };
}

const parsed = parsedOrExit('chaos', USAGE, () => parseArgs(process.argv.slice(2)));
if (parsed.help) console.log(USAGE);
else {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-chaos-'));
  const cleanups: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const c of cleanups.splice(0)) await c().catch(() => undefined);
  };
  const cleanUp = async () => {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  };
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.once(signal, () => {
      console.error(`chaos: stopped (${signal}); workers, Redis, simulator and temporary files cleaned up`);
      void cleanUp().then(() => process.exit(code));
    });
  }
  let reports: PhaseReport[] = [];
  try {
    reports = await main(parsed, dir, cleanups);
  } catch (err) {
    console.error(`chaos: failed; kept for a look: ${dir} (worker-*.log, redis/)`);
    throw err;
  } finally {
    await stopAll();
  }
  const violations = reports.flatMap((r) => r.violations.map((v) => `${r.phase} ${r.id}: ${v}`));
  // What went wrong can be looked into: the workers' logs and Redis's data (redis-server --dir … --appendonly yes).
  if (violations.length) console.log(`kept for a look: ${dir} (worker-*.log, redis/)`);
  else rmSync(dir, { recursive: true, force: true });
  for (const r of reports) console.log(`${r.phase} ${r.id}: ${r.state ?? ''} in ${r.seconds} s, disorder ${JSON.stringify(r.events)}${r.notes.map((n) => `\n  note: ${n}`).join('')}`);
  console.log(violations.length ? `VIOLATIONS (${violations.length}):\n${violations.slice(0, 50).join('\n')}` : 'no violations');
  if (parsed.out) writeFileSync(parsed.out, JSON.stringify({ date: new Date().toISOString(), args: parsed, reports }, null, 2) + '\n');
  process.exitCode = violations.length ? 1 : 0;
}

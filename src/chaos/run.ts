// `npm run chaos`: a staged power-target rollout and its rollback, a poll schedule, then polls left
// to the workers (`poll --enqueue-only`), each carried out by `bos-fleet worker` processes on a
// simulated fleet while workers and Redis are killed, frozen and restarted at random (disorder.ts);
// then every miner is checked (checks.ts): each change made exactly once and reported as made, each
// rollback restoring it, each poll run with one outcome per miner. Prints what it did and any
// violation; exits 1 on a violation.
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { DEFAULT_PREFIX } from '../fleet/keys.js';
import type { Outcome } from '../fleet/outcome.js';
import { RunStore, type RunRecord } from '../fleet/run-store.js';
import { rolloutReport } from '../rollout/create.js';
import { TERMINAL, waveRunId } from '../rollout/store.js';
import { SimCluster } from '../sim/cluster.js';
import type { MinerFaults } from '../sim/faults.js';
import { SIM_PASSWORD, SIM_USERNAME } from '../sim/miner.js';
import { inventoryCsv, planFleet } from '../sim/plan.js';
import { parsedOrExit, parseFlags, UsageError, wholeNumber } from '../bench/script-args.js';
import { checkChange, checkPollRun, powerWrites, writesBetween } from './checks.js';
import { CLI, Disorder, type Events } from './disorder.js';

const SCENARIOS = ['rollout', 'schedule', 'background'];
const USAGE = `usage: npm run chaos -- [options]

Runs a power-target rollout and its rollback, a poll schedule, then polls left to the workers
(--enqueue-only), on a simulated fleet whose bos-fleet workers and Redis are killed, frozen and
restarted at random; then checks every miner.

  --miners N           fleet size (default 600; 10 to 20,000)
  --seconds N          disorder per scenario phase, s (default 90; 10 to 3,600)
  --seed N             the random choices (default 1)
  --workers N          bos-fleet worker processes (default 2; 1 to 8)
  --scenarios S[,S…]   of ${SCENARIOS.join(',')} (default all)
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
  if (args.scenarios.includes('schedule')) reports.push(await pollSchedule(args, disorder, store, { inventory, where, minerIds, dir }));
  if (args.scenarios.includes('background')) reports.push(await backgroundPolls(args, disorder, store, { inventory, where, minerIds, dir }));
  return reports;
}

/** Every finished poll run of `runs` checked, after waiting up to SETTLE_MS for all of them to end. */
async function settledPollRuns(store: RunStore, runs: () => Promise<RunRecord[]>, minerIds: readonly string[], allOk: boolean): Promise<{ runs: RunRecord[]; violations: string[] }> {
  let found = await runs();
  for (const quiet = Date.now(); Date.now() - quiet < SETTLE_MS; await sleep(1_000)) {
    found = await runs();
    const counts = await Promise.all(found.map((r) => store.getCounts(r.runId)));
    if (found.every((r, i) => (counts[i]?.done ?? 0) >= r.total)) break;
  }
  const violations: string[] = [];
  for (const r of found) violations.push(...checkPollRun(r.runId, r.total, await store.getOutcomes(r.runId), minerIds, allOk));
  return { runs: found, violations };
}

/** The workers' log lines saying they queued a run's lost jobs again, by log file (each only grows). */
function requeueLines(dir: string): Map<string, string[]> {
  const logs = readdirSync(dir).filter((f) => /^worker-.*\.log$/.test(f));
  return new Map(logs.map((f) => [f, readFileSync(path.join(dir, f), 'utf8').split('\n').filter((l) => l.includes('had no outcome and no job still to run')).map((l) => l.replace(/ \(lost with writes.*$/, ''))]));
}

/** A phase's note of the lost jobs the workers queued again during it (`before`: the lines said before it). */
function requeueNotes(dir: string, before: Map<string, string[]>): string[] {
  const requeued = [...requeueLines(dir)].flatMap(([f, lines]) => lines.slice(before.get(f)?.length ?? 0));
  return requeued.length ? [`the workers queued lost jobs again ${requeued.length} times: ${requeued.slice(0, 3).join('; ')}`] : [];
}

/**
 * Polls left to the workers (`poll --enqueue-only`), one started every 10 s under the disorder: no
 * process waits on them, so the workers alone must queue again the jobs Redis loses (run-keeper.ts).
 * A run Redis lost whole (its record too, with the last second) is noted, not held against them.
 */
async function backgroundPolls(args: ChaosArgs, disorder: Disorder, store: RunStore, f: { inventory: string; where: string[]; minerIds: string[]; dir: string }): Promise<PhaseReport> {
  const started = Date.now();
  const saidBefore = requeueLines(f.dir);
  const ids: string[] = [];
  const violations: string[] = [];
  let over = false;
  let refused = 0;
  const enqueuing = (async () => {
    while (!over) {
      try {
        const { stdout } = await cli(process.execPath, [CLI, 'poll', '--inventory', f.inventory, '--enqueue-only', '--json', ...f.where]);
        ids.push((JSON.parse(stdout) as { runId: string }).runId);
        log(`background poll ${ids.at(-1)} enqueued`);
      } catch (err) {
        const said = String((err as { stderr?: string }).stderr || err).trim();
        // Redis down as it starts: it says so and enqueues nothing (exit 1), as it should.
        if (said.includes('cannot connect to Redis')) refused++;
        else violations.push(`poll --enqueue-only failed: ${said.slice(0, 300)}`);
      }
      for (const until = Date.now() + 10_000; !over && Date.now() < until; ) await sleep(200);
    }
  })();
  const events = await disorder.run(args.seconds * 1_000, async () => false);
  over = true;
  await enqueuing;
  log(`background polls: disorder over (${JSON.stringify(events)}), waiting for their ends`);
  const records = async () => (await Promise.all(ids.map((id) => store.getRun(id)))).filter((r): r is RunRecord => r !== undefined);
  const { runs, violations: found } = await settledPollRuns(store, records, f.minerIds, !args.minerFaults);
  violations.push(...found);
  const gone = ids.filter((id) => !runs.some((r) => r.runId === id));
  if (gone.length && !args.powerLoss) violations.push(`runs gone from Redis: ${gone.join(', ')}`);
  log(`background polls: ${runs.length} runs, ${violations.length} violations`);
  const notes = [`${ids.length} runs enqueued${refused ? `; ${refused} refused at start with Redis down (nothing enqueued)` : ''}`, ...(gone.length ? [`${gone.length} runs lost whole with Redis's last second (--power-loss): ${gone.join(', ')}`] : []), ...requeueNotes(f.dir, saidBefore)];
  return { phase: 'background polls', id: `${ids.length} runs`, seconds: Math.round((Date.now() - started) / 1_000), events, violations, notes };
}

/** A poll schedule every 10 s under the disorder, then 30 s without it; every run it started is checked. */
async function pollSchedule(args: ChaosArgs, disorder: Disorder, store: RunStore, f: { inventory: string; where: string[]; minerIds: string[]; dir: string }): Promise<PhaseReport> {
  const id = `chaos-${args.seed}`;
  const started = Date.now();
  const saidBefore = requeueLines(f.dir);
  await cli(process.execPath, [CLI, 'schedule', 'add', 'poll', '--inventory', f.inventory, '--every', '10s', '--id', id, '--keep-runs', '10000', ...f.where]);
  log(`schedule ${id} added`);
  const events = await disorder.run(args.seconds * 1_000, async () => false);
  log(`schedule: disorder over (${JSON.stringify(events)}); 30 s more without it (a run that lost jobs has them queued again by the workers)`);
  await sleep(30_000);
  await cli(process.execPath, [CLI, 'schedule', 'remove', id, ...f.where]);
  const { runs, violations } = await settledPollRuns(store, async () => (await store.listRuns(10_000)).filter((r) => r.series === id), f.minerIds, !args.minerFaults);
  if (runs.length === 0) violations.push('the schedule started no run');
  log(`schedule ${id}: ${runs.length} runs, ${violations.length} violations`);
  return { phase: 'poll schedule', id, seconds: Math.round((Date.now() - started) / 1_000), events, violations, notes: [`${runs.length} runs (a tick is skipped while the run before it is unfinished)`, ...requeueNotes(f.dir, saidBefore)] };
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

// Rollouts through the CLI and worker processes: SIGKILL mid-rollout, dry runs, old firmware, contracts.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunStore } from '../src/fleet/run-store.js';
import { rolloutReport, type RolloutReport } from '../src/rollout/create.js';
import { reportText } from '../src/cli/rollout-command.js';
import { exited, expectExit, runCli, spawnCli, startCliFleet, type CliFleet, type FleetFiles } from './helpers/cli.js';
import { appliedWritesPerMiner, type TestFleet } from './helpers/fleet.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';
import { until } from './helpers/until.js';

const COUNT = 60;
let cf: CliFleet;
let tf: TestFleet;
let files: FleetFiles;
let redis: Redis;
beforeAll(async () => {
  // Every 10th miner speaks API 1.0.0; every reply takes 100 ms so a rollout can be interrupted.
  ({ tf, redis, files } = cf = await startCliFleet(COUNT, '127.15.0.1', (i: number) => (i % 10 === 9 ? { oldApi: true, slow: { latencyMs: 100 } } : { slow: { latencyMs: 100 } })));
});
afterAll(() => cf.close());


const appliedWrites = async (method: string) => (await tf.fleet.mutations()).filter((r) => r.method === method && r.result === 'applied');

describe('bos-fleet rollout', () => {
  it('--dry-run reads every miner, prints the diff and sends zero writes', async () => {
    const before = (await tf.fleet.mutations()).length;
    const prefix = uniquePrefix('dry');
    const r = await runCli(['rollout', 'start', '--inventory', files.inventory, '--credentials', files.credentials, '--redis', redisUrl(), '--prefix', prefix, '--power-target', '2400', '--dry-run', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { dryRun: boolean; runId: string; miners: { minerId: string; result: string; before: unknown; after: unknown }[] };
    expect(out.miners.length).toBe(COUNT);
    expect(out.miners[0]).toMatchObject({ result: 'would-apply', after: { powerTargetWatts: 2400 } });
    // Its run says it is a dry run wherever it is listed: it changed nothing.
    const runs = await runCli(['runs', '--redis', redisUrl(), '--prefix', prefix]);
    expect(runs.stdout.split('\n')[1]).toMatch(new RegExp(`^${out.runId}  power-target \\(dry run\\)  `));
    expect(JSON.parse((await runCli(['runs', '--json', '--redis', redisUrl(), '--prefix', prefix])).stdout)).toMatchObject([{ runId: out.runId, operation: 'power-target', dryRun: true, changes: { 'would-apply': COUNT } }]);
    const results = await runCli(['results', out.runId, '--redis', redisUrl(), '--prefix', prefix]);
    expect(results.stdout).toContain(`run ${out.runId}  power-target (dry run)  ${COUNT}/${COUNT} miners in `);
    // As text: a line per miner, columns aligned, then the tally, the refused counted by code
    // (1600 W is below some models' range).
    const text = await runCli(['rollout', 'start', '--inventory', files.inventory, '--credentials', files.credentials, '--redis', redisUrl(), '--prefix', uniquePrefix('drytext'), '--power-target', '1600', '--dry-run']);
    const lines = text.stdout.trimEnd().split('\n');
    const rows = lines.filter((l) => /^m\d{4} /.test(l));
    expect(rows.length).toBe(COUNT);
    expect(new Set(rows.map((l) => l.search(/would-apply|refused/))).size).toBe(1);
    const refused = out.miners.length - rows.filter((l) => l.includes('would-apply')).length;
    expect(refused).toBeGreaterThan(0);
    expect(lines.at(-1)).toBe(`would-apply ${COUNT - refused}, refused ${refused} (INVALID_REQUEST ${refused})`);
    expect((await tf.fleet.mutations()).length).toBe(before);
  });

  it('refuses a large rollout without --yes when nobody can confirm', async () => {
    const r = await runCli(['rollout', 'start', '--inventory', files.inventory, '--redis', redisUrl(), '--prefix', uniquePrefix('yes'), '--action', 'locate-on']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('this rollout changes 60 miners (locate on); pass --yes to confirm');
  });

  it('pools on API 1.0.0 miners: UNSUPPORTED_BY_FIRMWARE with no write; --wait --json prints the contract', async () => {
    const pools = path.join(files.dir, 'pools.json');
    writeFileSync(pools, JSON.stringify([{ name: 'Main', pools: [{ url: 'stratum+tcp://pool.example:3333', user: 'farm.{minerId}', passwordRef: 'default' }] }]));
    const prefix = uniquePrefix('pools');
    const before0 = await tf.fleet.state(tf.fleet.miners[0]!.id);
    const r = await runCli(['rollout', 'start', '--inventory', files.inventory, '--credentials', files.credentials, '--redis', redisUrl(), '--prefix', prefix, '--pools', pools, '--waves', '100%', '--max-failure-rate', '50%', '--yes', '--wait', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { rolloutId: string; state: string; waves: { index: number; miners: number; counts: Record<string, number> }[]; counts: Record<string, number> };
    expect(Object.keys(out).sort()).toEqual(['counts', 'rolloutId', 'state', 'waves']);
    expect(out).toMatchObject({ state: 'completed', waves: [{ index: 0, miners: 60 }], counts: { OK: 54, UNSUPPORTED_BY_FIRMWARE: 6 } });
    const writes = await appliedWrites('SetPoolGroups');
    const old = new Set(tf.fleet.miners.filter((_, i) => i % 10 === 9).map((m) => m.id));
    expect(writes.filter((w) => old.has(w.minerId))).toEqual([]);
    // The text status says where the failed miners are listed.
    const status = await runCli(['rollout', 'status', out.rolloutId, '--redis', redisUrl(), '--prefix', prefix]);
    expect(status.stdout).toContain(`details: bos-fleet results ${out.rolloutId}-w0 --redis ${redisUrl()} --prefix '${prefix}' --failed`);
    const sample = await tf.fleet.state(tf.fleet.miners[0]!.id);
    expect(sample.poolGroups[0]?.pools[0]).toMatchObject({ user: `farm.${tf.fleet.miners[0]!.id}`, password: 'sim-password' });

    // Rolled back: the old pools again. A miner never reports pool passwords: without
    // --pool-password-ref the restored pools get none, and the command says so.
    const rollback = (...more: string[]) => runCli(['rollout', 'rollback', out.rolloutId, '--credentials', files.credentials, '--redis', redisUrl(), '--prefix', prefix, '--waves', '100%', '--yes', '--wait', '--json', ...more]);
    // Without the miners' logins its own worker could only fail every miner: refused before it starts.
    const blind = await runCli(['rollout', 'rollback', out.rolloutId, '--redis', redisUrl(), '--prefix', prefix, '--waves', '100%', '--yes', '--wait', '--json']);
    expect(blind.code).toBe(1);
    expect(blind.stderr).toMatch(new RegExp(`rollout ${out.rolloutId}'s miners: credentials profile "default" \\(miners [\\w-]+, [\\w-]+, [\\w-]+ and 51 more\\) not found: pass --credentials FILE`));
    expect(blind.stderr).toContain('— or, for --wait, add --no-local-worker to leave the work to the running `bos-fleet worker` processes (they need them)');
    const wrong = await rollback('--pool-password-ref', 'nope');
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain(`--pool-password-ref: passwordRef "nope" names no credentials profile: add it to ${files.credentials}`);
    const back = await rollback('--pool-password-ref', 'default');
    expect(back.code).toBe(0);
    expect(JSON.parse(back.stdout)).toMatchObject({ state: 'completed', counts: { OK: 54 } });
    const restored = await tf.fleet.state(tf.fleet.miners[0]!.id);
    expect(restored.poolGroups.map((g) => g.pools.map((p) => p.url))).toEqual(before0.poolGroups.map((g) => g.pools.map((p) => p.url)));
    expect(restored.poolGroups.flatMap((g) => g.pools.map((p) => p.password))).toEqual(restored.poolGroups.flatMap((g) => g.pools.map(() => 'sim-password')));
    const bare = await rollback();
    expect(bare.code).toBe(0);
    expect(bare.stderr).toContain('a miner never reports its pool passwords: the pools this rollback restores are written with no password (pass --pool-password-ref PROFILE');
  });

  it('a pools file with a mistyped template, an inline password or an unknown passwordRef is refused, and nothing is written', async () => {
    const writes = (await tf.fleet.mutations()).length;
    const tryPools = async (pool: Record<string, unknown>) => {
      const file = path.join(files.dir, 'pools-bad.json');
      writeFileSync(file, JSON.stringify([{ name: 'Main', pools: [{ url: 'stratum+tcp://pool.example:3333', ...pool }] }]));
      const r = await runCli(['rollout', 'start', '--inventory', files.inventory, '--credentials', files.credentials, '--redis', redisUrl(), '--prefix', uniquePrefix('badpools'), '--pools', file, '--yes', '--wait']);
      expect(r.code).toBe(1);
      return r.stderr;
    };
    expect(await tryPools({ user: 'farm.{minerID}' })).toContain('0.pools.0.user: unknown template {minerID} in "farm.{minerID}" (known: {minerId}, {host}, {site})');
    expect(await tryPools({ user: 'farm', password: 'x' })).toContain('Unrecognized key: "password"; a pool password is never written in the file: passwordRef names the credentials profile');
    expect(await tryPools({ user: 'farm', passwordRef: 'nope' })).toContain(`passwordRef "nope" names no credentials profile: add it to ${files.credentials}`);
    // --wait's own worker needs the logins; the error says how to leave the work to running workers instead.
    const blind = await runCli(['rollout', 'start', '--inventory', files.inventory, '--redis', redisUrl(), '--prefix', uniquePrefix('blind'), '--power-target', '3000', '--yes', '--wait']);
    expect(blind.code).toBe(1);
    expect(blind.stderr).toMatch(/credentials profile "default" \(miners [\w-]+, [\w-]+, [\w-]+ and [\d,]+ more\) not found: pass --credentials FILE/);
    expect(blind.stderr).toContain('add --no-local-worker to leave the work to the running `bos-fleet worker` processes');
    expect((await tf.fleet.mutations()).length).toBe(writes);
  });

  it('a second rollout of the same setting on the same miners is refused while the first is unfinished; --allow-overlap starts it', async () => {
    const prefix = uniquePrefix('clash');
    const args = ['rollout', 'start', '--inventory', files.inventory, '--redis', redisUrl(), '--prefix', prefix, '--power-target', '2200', '--yes', '--json'];
    const first = await runCli(args); // no worker: it stays running, and both commands say so
    expect(first.code).toBe(0);
    expect(first.stderr).toContain('no `bos-fleet worker` is running on this Redis and prefix: the rollout waits until one starts');
    const { rolloutId } = JSON.parse(first.stdout) as { rolloutId: string };
    const status = await runCli(['rollout', 'status', rolloutId, '--redis', redisUrl(), '--prefix', prefix]);
    expect(status.stderr).toContain(`no \`bos-fleet worker\` is running on this Redis and prefix: rollout ${rolloutId} waits until one starts`);
    const refused = await runCli(args);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`rollout ${rolloutId} (power-target, running) already changes the tuner target of ${COUNT} of these ${COUNT} miners`);
    expect((await runCli([...args, '--allow-overlap'])).code).toBe(0);
    // A rollout's id where a run's is wanted: where its runs are, and how to stop it.
    const where = ['--redis', redisUrl(), '--prefix', prefix];
    expect((await runCli(['results', rolloutId, ...where])).stderr).toBe(
      `bos-fleet: "${rolloutId}" is a rollout, not a run: each of its 4 waves is a run (${rolloutId}-w0 … ${rolloutId}-w3: bos-fleet results ${rolloutId}-w0), and \`bos-fleet rollout status ${rolloutId}\` shows them together\n`,
    );
    expect((await runCli(['cancel', rolloutId, ...where])).stderr).toBe(`bos-fleet: "${rolloutId}" is a rollout, not a run: stop it with \`bos-fleet rollout abort ${rolloutId}\` (it records which miners were changed)\n`);
    // And the other way round: a wave's run id where its rollout's is wanted.
    expect((await runCli(['rollout', 'abort', `${rolloutId}-w1`, ...where])).stderr).toBe(`bos-fleet: no rollout "${rolloutId}-w1": that is the run of wave 1 of rollout ${rolloutId} (bos-fleet rollout status ${rolloutId})\n`);
    expect((await runCli(['rollout', 'abort', rolloutId, ...where])).code).toBe(0);
    expect((await runCli(['cancel', rolloutId, ...where])).stderr).toBe(`bos-fleet: "${rolloutId}" is a rollout, not a run, and it has ended (aborted): nothing to cancel\n`);
  });

  it('a worker SIGKILLed mid-rollout and restarted: 0 double-applies, 0 miners without an outcome', async () => {
    const prefix = uniquePrefix('rokill');
    const started = await runCli(['rollout', 'start', '--inventory', files.inventory, '--redis', redisUrl(), '--prefix', prefix, '--power-target', '2200', '--waves', '20%,100%', '--yes', '--json']);
    expect(started.code).toBe(0);
    const { rolloutId } = JSON.parse(started.stdout) as { rolloutId: string };
    const workerArgs = ['worker', '--redis', redisUrl(), '--prefix', prefix, '--credentials', files.credentials, '--concurrency', '6', '--consumers', '3', '--lock-ms', '2000'];
    const first = spawnCli(workerArgs);
    await until(async () => ((await rolloutReport(redis, rolloutId, prefix))?.counts['OK'] ?? 0) >= 20);
    first.kill('SIGKILL');
    await exited(first);
    const second = spawnCli(workerArgs);
    await until(async () => (await rolloutReport(redis, rolloutId, prefix))?.state === 'completed', 90_000);
    second.kill('SIGTERM');
    await exited(second);
    const report = await rolloutReport(redis, rolloutId, prefix);
    expect(report?.counts).toEqual({ OK: COUNT });
    // Only this test writes 2200 W.
    const perMiner = await appliedWritesPerMiner(tf.fleet, 'SetPowerTarget', (r) => (r as { powerTarget: { watt: number } }).powerTarget.watt === 2200);
    expect(perMiner.size).toBe(COUNT);
    expect([...perMiner.values()].every((n) => n === 1)).toBe(true);
    const status = await runCli(['rollout', 'status', rolloutId, '--redis', redisUrl(), '--prefix', prefix]);
    expect(status.stdout).toMatch(/completed/);
    // Every miner was changed once, those of the killed worker too (journaled before its write): none "already set".
    expect(report?.waves.reduce((n, w) => n + (w.changes?.['applied'] ?? 0), 0)).toBe(COUNT);
    expect(report?.waves.some((w) => w.changes?.['unchanged'])).toBe(false);
    // `runs` lines its columns up with the longest operation name and run id.
    const runs = (await runCli(['runs', '--redis', redisUrl(), '--prefix', prefix])).stdout.trimEnd().split('\n');
    expect(runs.slice(1).map((l) => l.split(/\s{2,}/)[1])).toEqual(['power-target', 'power-target']);
    expect(new Set(runs.map((l) => l.search(/CREATED|\d{4}-\d\d-\d\dT/))).size).toBe(1);
    expect((await runCli(['results', `${rolloutId}-w0`, '--failed', '--redis', redisUrl(), '--prefix', prefix])).stdout).toMatch(/^no failed miners\n/);
    const audit = await runCli(['audit', '--json', '--redis', redisUrl(), '--prefix', prefix]);
    expect((JSON.parse(audit.stdout) as { action: string }[]).map((a) => a.action)).toEqual(expect.arrayContaining(['rollout.start', 'rollout.completed']));
  });

  it('Ctrl-C on rollout start --wait stops the command, not the rollout: the miners in flight finish, it says how to hold or stop it, a worker later completes it', async () => {
    const prefix = uniquePrefix('roint');
    const watts = (r: unknown) => (r as { powerTarget: { watt: number } }).powerTarget.watt === 2150;
    // The second wave waits 10 s after the first, so the Ctrl-C (at the first write) lands before it.
    const cli = spawnCli(['rollout', 'start', '--inventory', files.inventory, '--credentials', files.credentials, '--redis', redisUrl(), '--prefix', prefix, '--power-target', '2150', '--waves', '10%,100%', '--pause-between', '10s', '--yes', '--wait']);
    await until(async () => (await appliedWritesPerMiner(tf.fleet, 'SetPowerTarget', watts)).size >= 1, 30_000, 10);
    cli.kill('SIGINT');
    await expectExit(cli, 130);
    const { stdout, stderr } = cli.output();
    const rolloutId = /rollout (ro-\S+) is still running in Redis/.exec(stderr)?.[1];
    expect(rolloutId, stderr).toBeDefined();
    expect(stderr).toContain(`bos-fleet rollout pause ${rolloutId} --redis ${redisUrl()} --prefix '${prefix}'`);
    expect(stdout).toContain(`rollout ${rolloutId}  power-target  running`);
    // Every miner written before the exit has its outcome: none was left half-done.
    const store = new RunStore(redis, prefix);
    const outcomes = new Set((await store.getOutcomes(`${rolloutId}-w0`)).map((o) => o.minerId));
    const writtenAtExit = await appliedWritesPerMiner(tf.fleet, 'SetPowerTarget', watts);
    expect([...writtenAtExit.keys()].filter((id) => !outcomes.has(id))).toEqual([]);
    expect(outcomes.size).toBeLessThan(COUNT); // the second wave was never started
    expect((await rolloutReport(redis, rolloutId!, prefix))?.state).toBe('running');

    const worker = spawnCli(['worker', '--redis', redisUrl(), '--prefix', prefix, '--credentials', files.credentials]);
    await until(async () => (await rolloutReport(redis, rolloutId!, prefix))?.state === 'completed', 60_000);
    worker.kill('SIGTERM');
    await exited(worker);
    const perMiner = await appliedWritesPerMiner(tf.fleet, 'SetPowerTarget', watts);
    expect(perMiner.size).toBe(COUNT);
    expect([...perMiner.values()].every((n) => n === 1)).toBe(true);
  });
});

describe('bos-fleet rollout status, as text', () => {
  const report = (over: Partial<RolloutReport>): RolloutReport => ({ rolloutId: 'ro-x', state: 'running', operation: 'power-target', waves: [], counts: {}, ...over });

  it('counts the miners still to go in an unfinished rollout, and says when the next wave starts', () => {
    const nextWaveAt = new Date(Date.now() + 600_000).toISOString();
    expect(reportText(report({ waves: [{ index: 0, miners: 10, counts: { MINER_TIMEOUT: 1, OK: 3 } }, { index: 1, miners: 90, counts: {} }] }))).toBe(
      ['rollout ro-x  power-target  running', '  wave 0:     10 miners  OK 3, MINER_TIMEOUT 1; 6 to go', '  wave 1:     90 miners  not started'].join('\n'),
    );
    expect(reportText(report({ nextWaveAt, waves: [{ index: 0, miners: 10, counts: { OK: 10 } }, { index: 1, miners: 90, counts: {} }] })).split('\n')[2]).toBe(`  wave 1:     90 miners  not started (starts in 10 min, at ${nextWaveAt})`);
    // Past its time (a worker is about to take it): starting.
    expect(reportText(report({ nextWaveAt: new Date(Date.now() - 1_000).toISOString(), waves: [{ index: 0, miners: 1, counts: { OK: 1 } }, { index: 1, miners: 1, counts: {} }] }))).toContain('wave 1:      1 miner   not started (starting)');
    // Paused after the next wave's time came: it starts on resume.
    expect(reportText(report({ state: 'paused', heldWave: 1, waves: [{ index: 0, miners: 1, counts: { OK: 1 } }, { index: 1, miners: 1, counts: {} }] }))).toContain('wave 1:      1 miner   not started (its time came during the pause: starts on resume)');
    // A rollout that has ended has nothing to go; a wave it stopped in the middle of whose miners are
    // not all settled yet (CANCELLED, or changed if they were being changed) says so.
    const halted = reportText(report({ state: 'halted', waves: [{ index: 0, miners: 10, counts: { OK: 3, INVALID_REQUEST: 4 } }] }));
    expect(halted).toContain('wave 0:     10 miners  OK 3, INVALID_REQUEST 4; 3 without an outcome yet (a running `bos-fleet worker` settles them)');
    expect(halted).not.toContain('to go');
    expect(reportText(report({ state: 'halted', waves: [{ index: 0, miners: 10, counts: { OK: 3, INVALID_REQUEST: 7 } }] }))).toMatch(/wave 0: {5}10 miners {2}OK 3, INVALID_REQUEST 7$/m);
  });

  it("says of each wave's OK miners how many it changed and how many were already set", () => {
    const waves: RolloutReport['waves'] = [
      { index: 0, miners: 10, counts: { OK: 9, MINER_TIMEOUT: 1 }, changes: { applied: 3, unchanged: 6 } },
      { index: 1, miners: 10, counts: { OK: 2 }, changes: { unchanged: 2 } },
    ];
    expect(reportText(report({ waves })).split('\n').slice(1)).toEqual([
      '  wave 0:     10 miners  OK 9, MINER_TIMEOUT 1 (changed 3, already set 6)',
      '  wave 1:     10 miners  OK 2 (changed 0, already set 2); 8 to go',
    ]);
  });
});

// Schedules: one run per tick however many workers run; ticks missed while all workers were down
// collapse into one late tick.
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunStore } from '../src/fleet/run-store.js';
import { startWorker } from '../src/workers/worker.js';
import { inventoryCsv } from '../src/sim/plan.js';
import { readAudit } from '../src/rollout/audit.js';
import { RolloutStore } from '../src/rollout/store.js';
import { runCli, writeFleetFiles, startCliFleet, type CliFleet, type FleetFiles } from './helpers/cli.js';
import { FAST_CORE, startTestFleet, type TestFleet } from './helpers/fleet.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';
import { until } from './helpers/until.js';

let cf: CliFleet;
let tf: TestFleet;
let files: FleetFiles;
let redis: Redis;
beforeAll(async () => {
  ({ tf, redis, files } = cf = await startCliFleet(5, '127.16.0.1', undefined, { maxRetriesPerRequest: null }, { rebootDownMs: 300 }));
});
afterAll(() => cf.close());

const worker = (prefix: string) => startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 8, credentials: tf.credentials, coreOptions: FAST_CORE });
const scheduleRuns = async (store: RunStore, id: string) => (await store.listRuns(100)).filter((r) => r.runId.startsWith(`${id}-`));

describe('schedule add poll --every', () => {
  it('fires once per tick with two workers running, and each run polls every miner once', async () => {
    const prefix = uniquePrefix('sched');
    const store = new RunStore(redis, prefix);
    const [a, b] = await Promise.all([worker(prefix), worker(prefix)]);
    const added = await runCli(['schedule', 'add', 'poll', '--inventory', files.inventory, '--every', '1s', '--id', 'every-second', '--redis', redisUrl(), '--prefix', prefix]);
    expect(added.code).toBe(0);
    expect(added.stderr).toBe(''); // workers that can do it run: no warning
    await new Promise((r) => setTimeout(r, 4_200));
    const removed = await runCli(['schedule', 'remove', 'every-second', '--redis', redisUrl(), '--prefix', prefix]);
    expect(removed.code).toBe(0);
    await new Promise((r) => setTimeout(r, 800)); // let the last run finish
    await Promise.all([a.close(), b.close()]);
    const runs = await scheduleRuns(store, 'every-second');
    expect(runs.length).toBeGreaterThanOrEqual(3);
    const ticks = runs.map((r) => Number(r.runId.split('-').pop())).sort((x, y) => x - y);
    expect(new Set(ticks).size).toBe(runs.length); // no tick started twice
    // One run per tick: after the first (immediate) tick, ticks are a full interval apart.
    for (let k = 2; k < ticks.length; k++) expect(ticks[k]! - ticks[k - 1]!).toBeGreaterThanOrEqual(950);
    for (const r of runs) expect((await store.getCounts(r.runId)).counts).toEqual({ OK: 5 });
    const actions = (await readAudit(redis, prefix)).map((e) => e.action);
    expect(actions).toEqual(['schedule.add', 'schedule.remove']);
  });

  it("--keep-runs 2: Redis keeps only the newest finished runs of the schedule, and nobody else's", async () => {
    const prefix = uniquePrefix('keep');
    const store = new RunStore(redis, prefix);
    // An operator's own poll from before: the schedule's retention is the schedule's runs only.
    const own = await runCli(['poll', '--inventory', files.inventory, '--credentials', files.credentials, '--redis', redisUrl(), '--prefix', prefix, '--json']);
    expect(own.code).toBe(0);
    const ownRun = (JSON.parse(own.stdout) as { runId: string }).runId;
    const w = await worker(prefix);
    const added = await runCli(['schedule', 'add', 'poll', '--inventory', files.inventory, '--every', '1s', '--id', 'kept', '--keep-runs', '2', '--redis', redisUrl(), '--prefix', prefix]);
    expect(added.code).toBe(0);
    await new Promise((r) => setTimeout(r, 5_200)); // five or six ticks
    expect((await runCli(['schedule', 'list', '--redis', redisUrl(), '--prefix', prefix])).stdout).toMatch(/ last kept-\d+ \([0-5]\/5 miners\)/);
    await runCli(['schedule', 'remove', 'kept', '--redis', redisUrl(), '--prefix', prefix]);
    await new Promise((r) => setTimeout(r, 800));
    await w.close();
    // Each new run deletes the finished ones beyond the newest two (a run still polling is spared).
    const runs = await scheduleRuns(store, 'kept');
    expect(runs.length).toBeGreaterThanOrEqual(2);
    expect(runs.length).toBeLessThanOrEqual(3);
    const kept = new Set([...runs.map((r) => r.runId), ownRun]);
    expect((await redis.keys(`${prefix}:outcomes:*`)).every((k) => kept.has(k.slice(`${prefix}:outcomes:`.length)))).toBe(true);
    expect((await store.getCounts(ownRun)).counts).toEqual({ OK: 5 });
  });

  it('ticks missed while every worker was down are not replayed: one late tick, then on schedule', async () => {
    const prefix = uniquePrefix('missed');
    const store = new RunStore(redis, prefix);
    await runCli(['schedule', 'add', 'poll', '--inventory', files.inventory, '--every', '1s', '--id', 'missed', '--redis', redisUrl(), '--prefix', prefix]);
    await new Promise((r) => setTimeout(r, 3_500)); // three or four ticks pass with no worker
    expect(await scheduleRuns(store, 'missed')).toEqual([]);
    const workerStart = Date.now();
    const w = await worker(prefix);
    await new Promise((r) => setTimeout(r, 2_500));
    const ticks = (await scheduleRuns(store, 'missed')).map((r) => Number(r.runId.split('-').pop()));
    // Of the ticks due while no worker ran, exactly one fired (late); later ones ran on schedule.
    expect(ticks.filter((t) => t < workerStart).length).toBe(1);
    expect(ticks.filter((t) => t >= workerStart).length).toBeGreaterThanOrEqual(1);
    await runCli(['schedule', 'remove', 'missed', '--redis', redisUrl(), '--prefix', prefix]);
    await w.close();
  });

  it('a tick never starts a run beside the previous one: slower polls than the interval skip ticks, counted in list', async () => {
    // Every reply takes 1.5 s: a poll takes 1.5 s warm (4.5 s cold: version, login, reads); the interval is 1 s.
    const slow = await startTestFleet(3, '127.16.1.1', () => ({ slow: { latencyMs: 1_500 } }));
    const dir = writeFleetFiles(inventoryCsv(slow.fleet.miners.map((m, index) => ({ ...m, index }))));
    const prefix = uniquePrefix('overlap');
    const store = new RunStore(redis, prefix);
    const w = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 8, credentials: slow.credentials, coreOptions: { ...FAST_CORE, readTimeoutMs: 3_000, loginTimeoutMs: 3_000, callBudgetMs: 6_000 } });
    try {
      const added = Date.now();
      await runCli(['schedule', 'add', 'poll', '--inventory', dir.inventory, '--every', '1s', '--id', 'slow', '--redis', redisUrl(), '--prefix', prefix]);
      await new Promise((r) => setTimeout(r, 5_500));
      const listed = await runCli(['schedule', 'list', '--json', '--redis', redisUrl(), '--prefix', prefix]);
      await runCli(['schedule', 'remove', 'slow', '--redis', redisUrl(), '--prefix', prefix]);
      const removed = Date.now();
      const [entry] = JSON.parse(listed.stdout) as { skipped: number; last: string }[];
      expect(entry?.skipped).toBeGreaterThanOrEqual(2);
      await until(async () => (await Promise.all((await scheduleRuns(store, 'slow')).map(async (r) => (await store.getCounts(r.runId)).done === r.total))).every(Boolean), 15_000);
      const runs = (await scheduleRuns(store, 'slow')).sort((a, b) => a.createdAtMs - b.createdAtMs);
      expect(runs.length).toBeGreaterThanOrEqual(1);
      // One after another, each at least 1.5 s long: no more than fit between the add and the removal
      // (3 on an idle machine; a loaded one takes longer to spawn the list and the removal).
      expect(runs.length).toBeLessThanOrEqual(Math.floor((removed - added) / 1_500) + 1);
      expect(runs.map((r) => r.runId)).toContain(entry?.last); // (a tick may start one more before the removal)
      // Each run starts after the one before has its last outcome.
      for (let k = 1; k < runs.length; k++) {
        const before = await store.getOutcomes(runs[k - 1]!.runId);
        expect(runs[k]!.createdAtMs).toBeGreaterThanOrEqual(Math.max(...before.map((o) => Date.parse(o.finishedAt))));
      }
      for (const r of runs) expect((await store.getCounts(r.runId)).counts).toEqual({ OK: 3 });
    } finally {
      await w.close();
      await slow.fleet.close();
      rmSync(dir.dir, { recursive: true, force: true });
    }
  });

  it('a tick that cannot start its rollout is tried again, then counted as failed with its error in list', async () => {
    const prefix = uniquePrefix('tickfail');
    // Rollouts cannot be listed under this prefix (a Redis error on every attempt).
    await redis.set(`${prefix}:rollouts`, 'not a sorted set');
    const w = await worker(prefix);
    try {
      await runCli(['schedule', 'add', 'rollout', '--power-target', '2500', '--inventory', files.inventory, '--every', '1s', '--id', 'broken', '--redis', redisUrl(), '--prefix', prefix]);
      const list = () => runCli(['schedule', 'list', '--redis', redisUrl(), '--prefix', prefix]);
      await until(async () => (await list()).stdout.includes('FAILED'), 20_000, 250);
      const text = (await list()).stdout;
      await runCli(['schedule', 'remove', 'broken', '--redis', redisUrl(), '--prefix', prefix]);
      expect(text).toMatch(/broken +rollout power target 2500 W +5 miners +every 1s +next \S+ +last broken-\d+ +\d+ ticks? FAILED \(last \d{4}-\d\d-\d\dT[\d:.]+Z: WRONGTYPE/);
      const [entry] = JSON.parse((await runCli(['schedule', 'list', '--json', '--redis', redisUrl(), '--prefix', prefix])).stdout || '[]') as { failed: number }[];
      expect(entry).toBeUndefined(); // removed
    } finally {
      await w.close();
      await redis.del(`${prefix}:rollouts`);
    }
  });

  it("--keep-runs 2 of a rollout schedule: Redis keeps its newest finished rollouts only, never one started by hand", async () => {
    const prefix = uniquePrefix('keepro');
    const rollouts = new RolloutStore(redis, prefix);
    const store = new RunStore(redis, prefix);
    const w = await worker(prefix);
    try {
      const byHand = await runCli(['rollout', 'start', '--inventory', files.inventory, '--credentials', files.credentials, '--power-target', '2600', '--waves', '100%', '--yes', '--wait', '--json', '--redis', redisUrl(), '--prefix', prefix]);
      const handId = (JSON.parse(byHand.stdout) as { rolloutId: string }).rolloutId;
      await runCli(['schedule', 'add', 'rollout', '--power-target', '2700', '--waves', '100%', '--inventory', files.inventory, '--every', '1s', '--id', 'daily', '--keep-runs', '2', '--redis', redisUrl(), '--prefix', prefix]);
      await until(async () => (await readAudit(redis, prefix)).filter((e) => e.action === 'rollout.start' && e.subject.startsWith('daily-')).length >= 5, 20_000, 200);
      // The list says how the last tick's rollout is doing.
      expect((await runCli(['schedule', 'list', '--redis', redisUrl(), '--prefix', prefix])).stdout).toMatch(/ last daily-\d+ \((running|completed)\)/);
      await runCli(['schedule', 'remove', 'daily', '--redis', redisUrl(), '--prefix', prefix]);
      const ids = await rollouts.listAll();
      const daily = ids.filter((id) => id.startsWith('daily-'));
      // Each tick deleted the finished ones beyond the newest two (one still changing miners is spared).
      expect(daily.length).toBeGreaterThanOrEqual(2);
      expect(daily.length).toBeLessThanOrEqual(3);
      expect(ids).toContain(handId);
      // The newest tick's rollout may not have started its wave yet when the schedule is removed (on a
      // loaded machine): the worker starts it, and its run is kept like the others'.
      const runIds = new Set<string>();
      await until(async () => {
        for (const r of await store.listRuns(100)) runIds.add(r.runId);
        return daily.every((id) => runIds.has(`${id}-w0`));
      }, 15_000, 100).catch(() => undefined);
      expect(runIds.has(`${handId}-w0`)).toBe(true);
      for (const id of daily) expect(runIds.has(`${id}-w0`)).toBe(true);
      // Of the deleted ones, nothing is left: no record, no run, no outcome; the audit log keeps them.
      const started = (await readAudit(redis, prefix)).filter((e) => e.action === 'rollout.start' && e.subject.startsWith('daily-')).map((e) => e.subject);
      const gone = started.filter((id) => !daily.includes(id));
      expect(gone.length).toBeGreaterThanOrEqual(3);
      const status = await runCli(['rollout', 'status', gone[0]!, '--redis', redisUrl(), '--prefix', prefix]);
      expect(status.stderr).toContain(`no rollout "${gone[0]}" (see bos-fleet rollout status; a schedule's finished rollouts beyond its --keep-runs / --keep-for are deleted: bos-fleet audit --subject ${gone[0]} shows what it did)`);
      const history = await runCli(['audit', '--subject', gone[0]!, '--json', '--redis', redisUrl(), '--prefix', prefix]);
      expect((JSON.parse(history.stdout) as { action: string }[]).map((e) => e.action)).toEqual(expect.arrayContaining(['rollout.start', 'rollout.wave', 'rollout.completed']));
      for (const id of gone) {
        expect(await rollouts.get(id)).toBeUndefined();
        expect(await redis.exists(store.k.outcomes(`${id}-w0`), store.k.run(`${id}-w0`))).toBe(0);
      }
    } finally {
      await w.close();
    }
  });

  it('a scheduled reboot reboots its miners at every tick (each wave asks for the reboot when it starts)', async () => {
    const prefix = uniquePrefix('reboots');
    const rebootsOf = async () => (await tf.fleet.mutations()).filter((m) => m.method === 'Reboot' && m.result === 'applied').length;
    const before = await rebootsOf();
    const w = await worker(prefix);
    try {
      const added = await runCli(['schedule', 'add', 'rollout', '--action', 'reboot', '--waves', '100%', '--inventory', files.inventory, '--every', '3s', '--id', 'nightly', '--redis', redisUrl(), '--prefix', prefix]);
      expect(added.code).toBe(0);
      // Every miner rebooted by two ticks. Before, only the first tick rebooted anything: the next ones
      // found every miner booted after the request, which was made when the schedule was added. (A
      // tick whose wave starts within a second of the last reboot may find it so too, as a miner says
      // its uptime in whole seconds: hence ticks 3 s apart, and the count rather than each tick.)
      await until(async () => (await rebootsOf()) - before >= 10, 40_000, 200);
      await runCli(['schedule', 'remove', 'nightly', '--redis', redisUrl(), '--prefix', prefix]);
      const runs = new RunStore(redis, prefix);
      const store = new RolloutStore(redis, prefix);
      const rebooting = async () => (await Promise.all((await store.listAll()).filter((x) => x.startsWith('nightly-')).map(async (id) => (await runs.getCounts(`${id}-w0`)).changes['applied'] ?? 0))).filter((n) => n > 0).length;
      // A miner's reboot is applied before its outcome says so (the job waits for it to come back).
      await until(async () => (await rebooting()) >= 2, 15_000, 100).catch(() => undefined);
      expect(await rebooting()).toBeGreaterThanOrEqual(2);
    } finally {
      await w.close();
    }
  });

  it('list shows the schedule; bad options are named', async () => {
    const prefix = uniquePrefix('list');
    const added = await runCli(['schedule', 'add', 'rollout', '--inventory', files.inventory, '--cron', '0 14 * * *', '--tz', 'Europe/Prague', '--power-target', '2000', '--id', 'curtail', '--redis', redisUrl(), '--prefix', prefix]);
    expect(added.code).toBe(0);
    expect(added.stderr).toContain('WARNING: no `bos-fleet worker` is running on this Redis and prefix: its ticks wait until one starts');
    expect(added.stdout).toContain(`It keeps these miners: after editing ${files.inventory}, add it again with --id curtail`);
    const list = await runCli(['schedule', 'list', '--json', '--redis', redisUrl(), '--prefix', prefix]);
    expect(JSON.parse(list.stdout)).toMatchObject([{ scheduleId: 'curtail', kind: 'rollout', cron: '0 14 * * *', tz: 'Europe/Prague', miners: 5 }]);
    expect(JSON.parse(list.stdout)[0].nextAt).toMatch(/T12:00:00|T13:00:00/); // 14:00 Prague in UTC
    const bad = await runCli(['schedule', 'add', 'poll', '--inventory', files.inventory, '--every', 'soon', '--redis', redisUrl(), '--prefix', prefix]);
    expect(bad.stderr).toContain('--every must be a duration like 30s, 10m or 1h, got "soon"');
    const bare = await runCli(['schedule', 'add', 'poll', '--inventory', files.inventory, '--every', '15', '--redis', redisUrl(), '--prefix', prefix]);
    expect(bare.stderr).toContain('--every needs a unit, like 30s, 10m or 1h, got "15"');
    // A bad cron pattern or time zone is named, and nothing is stored (the schedule list stays as it was).
    const add = (cron: string, ...more: string[]) => runCli(['schedule', 'add', 'poll', '--inventory', files.inventory, '--cron', cron, ...more, '--redis', redisUrl(), '--prefix', prefix]);
    const hour = await add('0 25 * * *');
    expect(hour.code).toBe(1);
    expect(hour.stderr).toContain('--cron "0 25 * * *" is not a cron pattern: Constraint error, got value 25 expected range 0-23');
    // A field left out (or a seconds field added) would be read in other places: refused, counted.
    const short = await add('0 14 * *');
    expect(short.code).toBe(1);
    expect(short.stderr).toContain('--cron "0 14 * *" has 4 fields, not 5 (fields: minute hour day-of-month month day-of-week');
    expect((await add('0 0 14 * * *')).stderr).toContain('has 6 fields, not 5');
    const zone = await add('0 14 * * *', '--tz', 'Europe/Nowhere');
    expect(zone.stderr).toContain('--tz "Europe/Nowhere" is not a time zone');
    const { addSchedule } = await import('../src/rollout/schedules.js');
    const def = { scheduleId: 'bad', kind: 'poll' as const, cron: '61 * * * *', targets: [], inventoryFile: 'x', inventoryDigest: 'x', actor: 'test', createdAt: new Date().toISOString() };
    await expect(addSchedule(redis, def, prefix)).rejects.toThrow('--cron "61 * * * *" is not a cron pattern');
    const after = await runCli(['schedule', 'list', '--json', '--redis', redisUrl(), '--prefix', prefix]);
    expect((JSON.parse(after.stdout) as { scheduleId: string }[]).map((d) => d.scheduleId)).toEqual(['curtail']);
    // The same --id again replaces the schedule, and says so.
    const again = await runCli(['schedule', 'add', 'rollout', '--inventory', files.inventory, '--cron', '0 15 * * *', '--power-target', '2000', '--id', 'curtail', '--redis', redisUrl(), '--prefix', prefix]);
    // Without --tz the pattern is UTC, not the zone of whichever worker's host computes the next tick.
    expect(again.stdout).toContain('schedule curtail (replaces the schedule of that id): rollout of 5 miners, cron "0 15 * * *" (UTC)');
    const utc = await runCli(['schedule', 'list', '--json', '--redis', redisUrl(), '--prefix', prefix]);
    expect(JSON.parse(utc.stdout)).toMatchObject([{ scheduleId: 'curtail', cron: '0 15 * * *', tz: 'UTC' }]);
  });

  it('a rollout or rollback schedule of more than 50 miners asks first (--yes without a terminal), saying when it fires; add says its first tick', async () => {
    const prefix = uniquePrefix('confirm');
    // 60 miners on addresses nothing serves: no worker runs under this prefix, so no tick is carried out.
    const big = path.join(files.dir, 'big.csv');
    writeFileSync(big, inventoryCsv(Array.from({ length: 60 }, (_, i) => ({ id: `b${String(i).padStart(3, '0')}`, host: `127.37.0.${i + 1}`, port: 50051 }))));
    const list = async () => (JSON.parse((await runCli(['schedule', 'list', '--json', '--redis', redisUrl(), '--prefix', prefix])).stdout) as { scheduleId: string }[]).map((d) => d.scheduleId);
    const at = (flags: string[]) => runCli(['schedule', 'add', ...flags, '--redis', redisUrl(), '--prefix', prefix]);
    // An --every schedule fires its first tick at once: a farm-wide reboot added by mistake would start now.
    const reboot = await at(['rollout', '--inventory', big, '--action', 'reboot', '--every', '24h', '--id', 'nightly']);
    expect(reboot.code).toBe(1);
    expect(reboot.stderr).toMatch(/this schedule changes 60 miners \(reboot\) at every tick, every 1d, the first at once \(\d{4}-\d\d-\d\dT[\d:.]+Z\); pass --yes to confirm/);
    const cron = await at(['rollout', '--inventory', big, '--power-target', '2000', '--cron', '0 14 * * *', '--id', 'curtail']);
    expect(cron.stderr).toMatch(/this schedule changes 60 miners \(power target 2000 W\) at every tick, cron "0 14 \* \* \*" \(UTC\), the first at \d{4}-\d\d-\d\dT14:00:00\.000Z; pass --yes to confirm/);
    expect(await list()).toEqual([]);
    // Confirmed: added, and the first tick said (BullMQ's own next tick).
    const added = await at(['rollout', '--inventory', big, '--power-target', '2000', '--cron', '0 14 * * *', '--id', 'curtail', '--yes']);
    expect(added.code).toBe(0);
    expect(added.stdout).toMatch(/schedule curtail: rollout of 60 miners, cron "0 14 \* \* \*" \(UTC\), first tick at \d{4}-\d\d-\d\dT14:00:00\.000Z; carried out by/);
    // The restore asks too, naming what it rolls back.
    const restore = await at(['rollback', '--of', 'curtail', '--cron', '0 18 * * *', '--id', 'restore']);
    expect(restore.stderr).toContain("this schedule changes 60 miners (roll back schedule curtail's latest rollout: power target 2000 W) at every tick, cron \"0 18 * * *\" (UTC), the first at ");
    const json = await at(['rollback', '--of', 'curtail', '--cron', '0 18 * * *', '--id', 'restore', '--yes', '--json']);
    expect(JSON.parse(json.stdout)).toEqual({ scheduleId: 'restore', replaced: false, nextAt: expect.stringMatching(/T18:00:00\.000Z$/) });
    expect((await list()).sort()).toEqual(['curtail', 'restore']);
    // A poll changes nothing: not asked. Its --every schedule's first tick is at once, and said so.
    const poll = await at(['poll', '--inventory', big, '--every', '10m', '--id', 'often']);
    expect(poll.stdout).toMatch(/schedule often: poll of 60 miners, every 10m, first tick at once \(\d{4}-\d\d-\d\dT[\d:.]+Z\); carried out by/);
    for (const id of ['curtail', 'restore', 'often']) expect((await runCli(['schedule', 'remove', id, '--redis', redisUrl(), '--prefix', prefix])).code).toBe(0);
  });
});

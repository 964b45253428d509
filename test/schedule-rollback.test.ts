// `schedule add rollback --of SCHEDULE`: the end of a curtailment window puts each miner back to its
// own power target (a farm of several models has no one value to restore), once per lowering, and
// never restores an old lowering's values over later changes. Ticks are handed to the real schedule
// processor one by one (their times chosen by the test); rollouts run on a real worker and Redis.
import { DelayedError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAME } from '../src/fleet/keys.js';
import { openQueue } from '../src/fleet/queue.js';
import { RunStore } from '../src/fleet/run-store.js';
import { readAudit } from '../src/rollout/audit.js';
import { createScheduleProcessor } from '../src/rollout/schedule-ticks.js';
import { CONTROL_QUEUE } from '../src/rollout/control.js';
import { RolloutStore, TERMINAL, waveRunId } from '../src/rollout/store.js';
import { startWorker, type RunningWorker } from '../src/workers/worker.js';
import { runCli, startCliFleet, type CliFleet } from './helpers/cli.js';
import { FAST_CORE } from './helpers/fleet.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';
import { until } from './helpers/until.js';

let cf: CliFleet;
let redis: Redis;
beforeAll(async () => {
  cf = await startCliFleet(6, '127.47.0.1', undefined, { maxRetriesPerRequest: null });
  redis = cf.redis;
});
afterAll(() => cf.close());

/** A cron that does not fire during a test: its ticks are the test's, at times from T on (retention reads them). */
const T = Date.now();
const NEVER = ['--cron', '0 0 1 1 *'];

async function setUp(prefix: string) {
  const cli = (args: string[]) => runCli([...args, '--redis', redisUrl(), '--prefix', prefix]);
  const worker: RunningWorker = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 8, credentials: cf.tf.credentials, coreOptions: FAST_CORE });
  const jobs = openQueue(QUEUE_NAME, redis, prefix);
  const control = openQueue(CONTROL_QUEUE, redis, prefix);
  const process = createScheduleProcessor({ redis, prefix, jobs, control });
  // A tick as BullMQ delivers it (`delivery`: the lock token, and the job's moveToDelayed).
  const tick = (scheduleId: string, ms: number, delivery?: { token: string; moveToDelayed: (at: number) => Promise<void> }) =>
    process({ id: `repeat:${scheduleId}:${ms}`, data: { scheduleId }, timestamp: ms, moveToDelayed: delivery?.moveToDelayed } as Job<{ scheduleId: string }>, delivery?.token);
  const store = new RolloutStore(redis, prefix);
  const settled = (id: string) => until(async () => TERMINAL.includes((await store.status(id))?.state ?? 'running'), 30_000, 50);
  return { prefix, cli, tick, store, settled, close: async () => (await worker.close(), await jobs.close(), await control.close()) };
}

/** Runs `body` against a worker and the schedule processor under a fresh prefix, and stops them after. */
async function withProcessor(name: string, body: (t: Awaited<ReturnType<typeof setUp>>) => Promise<void>): Promise<void> {
  const t = await setUp(uniquePrefix(name));
  try {
    await body(t);
  } finally {
    await t.close();
  }
}

/** A lowering schedule (`lowering`: its change and waves) and a rollback schedule of it, neither firing on its own. */
async function addCurtailment(t: Awaited<ReturnType<typeof setUp>>, [lower, restore]: [string, string], lowering: string[], restoreWaves = '100%') {
  const lowered = await t.cli(['schedule', 'add', 'rollout', '--inventory', cf.files.inventory, ...lowering, '--id', lower, ...NEVER]);
  const restored = await t.cli(['schedule', 'add', 'rollback', '--of', lower, '--waves', restoreWaves, '--id', restore, ...NEVER]);
  return { lowered, restored };
}

const watts = async () => Object.fromEntries(await Promise.all(cf.tf.fleet.miners.map(async (m) => [m.id, (await cf.tf.fleet.state(m.id)).powerTargetW] as const)));
const writes = async () => (await cf.tf.fleet.mutations()).filter((m) => m.method === 'SetPowerTarget' && m.result === 'applied').length;

describe('schedule add rollback', () => {
  it('restores each miner its own target, once per lowering; later ticks and a tick delivered twice change nothing', async () => {
    await withProcessor('restore', async (t) => {
      const original = await watts();
      expect(new Set(Object.values(original)).size).toBeGreaterThan(1); // several models: no one value to restore
      const { lowered, restored: added } = await addCurtailment(t, ['lower', 'restore'], ['--power-target', '2000', '--waves', '100%'], '50%,100%');
      expect(lowered.code).toBe(0);
      expect(added.stdout).toContain("schedule restore: rollback of schedule lower's latest rollout");

      // Before any lowering: nothing to roll back.
      expect(await t.tick('restore', T + 1_000)).toEqual({ skipped: `restore-${T + 1000}` });
      expect(await t.tick('lower', T + 2_000)).toEqual({ started: `lower-${T + 2000}` });
      await t.settled(`lower-${T + 2000}`);
      expect(Object.values(await watts()).every((w) => w === 2000)).toBe(true);
      const afterLowering = await writes();

      expect(await t.tick('restore', T + 3_000)).toEqual({ started: `restore-${T + 3000}` });
      await t.settled(`restore-${T + 3000}`);
      expect(await t.store.get(`restore-${T + 3000}`)).toMatchObject({ rollbackOf: `lower-${T + 2000}`, actor: 'schedule:restore', waves: [0.5, 1] });
      expect((await t.store.status(`restore-${T + 3000}`))?.state).toBe('completed');
      expect(await watts()).toEqual(original);
      expect(await writes()).toBe(afterLowering + 6);

      // The next day's lowering did not start: this restore must not put yesterday's values back over
      // what was changed since. The same tick delivered again starts nothing new.
      expect(await t.tick('restore', T + 4_000)).toEqual({ skipped: `restore-${T + 4000}` });
      expect(await t.tick('restore', T + 3_000)).toEqual({ started: `restore-${T + 3000}` });
      expect(await writes()).toBe(afterLowering + 6);
      const list = await t.cli(['schedule', 'list']);
      expect(list.stdout).toMatch(
        new RegExp(`restore +rollback of lower's latest rollout +6 miners +cron "0 0 1 1 \\*" UTC +next \\S+ +last restore-${T + 3000} \\(completed\\) +2 ticks skipped \\(last \\S+: rollout lower-${T + 2000} \\(schedule lower's latest\\) was rolled back already, by this schedule\\)`),
      );

      // The lowering added again for one rack: the restore's list shows the miners it now rolls back.
      await t.cli(['schedule', 'add', 'rollout', '--inventory', cf.files.inventory, '--power-target', '2000', '--miner', cf.tf.fleet.miners[0]!.id, '--id', 'lower', ...NEVER]);
      expect((await t.cli(['schedule', 'list'])).stdout).toMatch(/restore +rollback of lower's latest rollout +1 miner +cron/);

      // The lowering schedule goes: the restore's ticks now fail, and removing it says so.
      const removed = await t.cli(['schedule', 'remove', 'lower']);
      expect(removed.stderr).toContain("schedule restore rolls back this one's rollouts: its ticks now fail (bos-fleet schedule remove restore)");
      await expect(t.tick('restore', T + 5_000)).rejects.toThrow('schedule lower, whose latest rollout this one rolls back, is gone (removed)');
    });
  });

  it('a lowering still going at the restore\'s time is aborted, saying why: the miners it changed are restored, the rest left as they are', async () => {
    await withProcessor('restore-busy', async (t) => {
      const original = await watts();
      await addCurtailment(t, ['slow', 'undo'], ['--power-target', '2100', '--waves', '50%,100%', '--pause-between', '1h']);
      expect(await t.tick('slow', T + 1_000)).toEqual({ started: `slow-${T + 1000}` });
      // Wave 0 done, wave 1 an hour away: the lowering still runs when the window ends.
      await until(async () => (await t.store.status(`slow-${T + 1000}`))?.waveEndedAtMs !== undefined, 30_000, 50);
      expect(await t.tick('undo', T + 2_000)).toEqual({ started: `undo-${T + 2000}` });
      const why = `the end of its window: schedule undo restores the miners it changed (rollout undo-${T + 2000})`;
      expect(await t.store.status(`slow-${T + 1000}`)).toMatchObject({ state: 'aborted', reason: why });
      expect((await readAudit(redis, t.prefix, 200, `slow-${T + 1000}`)).find((a) => a.action === 'rollout.abort')).toMatchObject({ actor: 'schedule:undo', details: { reason: why } });
      await t.settled(`undo-${T + 2000}`);
      expect(await watts()).toEqual(original);
      const undone = await t.store.members(`undo-${T + 2000}`);
      expect(undone?.targets).toHaveLength(3); // the wave-0 half the lowering changed, and only those
    });
  });

  it('a miner still being written when the window ends is waited for (the tick is delayed, not failed), then restored too', async () => {
    const slow = cf.tf.fleet.miners[0]!;
    await cf.tf.fleet.setFaults(slow.id, { slow: { latencyMs: 600 } });
    try {
      await withProcessor('restore-settle', async (t) => {
        const original = await watts();
        await addCurtailment(t, ['dip', 'rise'], ['--power-target', '2300', '--waves', '100%']);
        expect(await t.tick('dip', T + 1_000)).toEqual({ started: `dip-${T + 1000}` });
        const runs = new RunStore(redis, t.prefix);
        const wave = waveRunId(`dip-${T + 1000}`, 0);
        // The slow miner journaled: its write is on its way.
        await until(async () => (await runs.journaled(wave, slow.id)) !== undefined, 15_000, 10);
        const delayed: number[] = [];
        const tick = () => t.tick('rise', T + 2_000, { token: 'lock', moveToDelayed: async (at: number) => void delayed.push(at) });
        await expect(tick()).rejects.toBeInstanceOf(DelayedError);
        expect(delayed).toHaveLength(1);
        expect((await t.store.status(`dip-${T + 1000}`))?.state).toBe('aborted');
        // Its outcome in (the write made), the tick delivered again starts the restore of all six.
        await until(async () => (await runs.getOutcomes(wave)).length === 6, 15_000, 50);
        expect(await tick()).toEqual({ started: `rise-${T + 2000}` });
        await t.settled(`rise-${T + 2000}`);
        expect(await watts()).toEqual(original);
        expect((await t.store.members(`rise-${T + 2000}`))?.targets).toHaveLength(6);
      });
    } finally {
      await cf.tf.fleet.setFaults(slow.id, {});
    }
  });

  it('a lowering not restored yet (its restore tick failed, say) is not lowered over: the next restore tick restores it', async () => {
    await withProcessor('restore-owed', async (t) => {
      const original = await watts();
      await addCurtailment(t, ['low', 'up'], ['--power-target', '2050', '--waves', '100%']);
      expect(await t.tick('low', T + 1_000)).toEqual({ started: `low-${T + 1000}` });
      await t.settled(`low-${T + 1000}`);
      const lowered = await writes();
      // No restore since (its tick failed for good). Lowered over, every miner would count "already
      // set", and the restore after — of that lowering only — would leave them at 2050 W for good.
      expect(await t.tick('low', T + 2_000)).toEqual({ skipped: `low-${T + 2000}` });
      expect(await writes()).toBe(lowered);
      const list = await t.cli(['schedule', 'list', '--json']);
      const low = (JSON.parse(list.stdout) as { scheduleId: string; skippedReason?: string }[]).find((s) => s.scheduleId === 'low');
      expect(low?.skippedReason).toBe(
        `rollout low-${T + 1000} (this schedule's previous) is not restored yet, and schedule up restores this schedule's rollouts: lowered again now, its miners would count as already set, and the next restore would leave them lowered for good; so this tick changes nothing, and the next restore tick restores low-${T + 1000} (or now: bos-fleet rollout rollback low-${T + 1000})`,
      );
      // The next restore tick restores that lowering; the schedule then goes on as before.
      expect(await t.tick('up', T + 3_000)).toEqual({ started: `up-${T + 3000}` });
      await t.settled(`up-${T + 3000}`);
      expect(await t.store.get(`up-${T + 3000}`)).toMatchObject({ rollbackOf: `low-${T + 1000}` });
      expect(await watts()).toEqual(original);
      expect(await t.tick('low', T + 4_000)).toEqual({ started: `low-${T + 4000}` });
      await t.settled(`low-${T + 4000}`);
      expect(await t.tick('up', T + 5_000)).toEqual({ started: `up-${T + 5000}` });
      await t.settled(`up-${T + 5000}`);
      expect(await watts()).toEqual(original);
      // A schedule no restore schedule follows is never held so.
      await t.cli(['schedule', 'add', 'rollout', '--inventory', cf.files.inventory, '--power-target', '2050', '--waves', '100%', '--id', 'solo', ...NEVER]);
      expect(await t.tick('solo', T + 6_000)).toEqual({ started: `solo-${T + 6000}` });
      await t.settled(`solo-${T + 6000}`);
      expect(await t.tick('solo', T + 7_000)).toEqual({ started: `solo-${T + 7000}` });
      await t.settled(`solo-${T + 7000}`);
      await t.cli(['rollout', 'rollback', `solo-${T + 6000}`, '--waves', '100%', '--yes', '--wait', '--credentials', cf.files.credentials]);
      expect(await watts()).toEqual(original);
    });
  });

  it('a rack rolled back by hand first: the restore still restores the rest', async () => {
    await withProcessor('restore-part', async (t) => {
      const original = await watts();
      const siteOf = new Map(cf.tf.inventory.targets.map((x) => [x.minerId, x.site]));
      await addCurtailment(t, ['cut', 'uncut'], ['--power-target', '2200', '--waves', '100%']);
      expect(await t.tick('cut', T + 1_000)).toEqual({ started: `cut-${T + 1000}` });
      await t.settled(`cut-${T + 1000}`);
      // site-a's miners overheat at 2200 W: rolled back by hand, site-b's stay lowered.
      const byHand = await t.cli(['rollout', 'rollback', `cut-${T + 1000}`, '--site', 'site-a', '--waves', '100%', '--yes', '--wait', '--json', '--credentials', cf.files.credentials]);
      expect(byHand.stderr).toContain(`bos-fleet: 3 of the 6 miners rollout cut-${T + 1000} changed (--site "site-a")`);
      const partial = (JSON.parse(byHand.stdout) as { rolloutId: string }).rolloutId;
      expect(await t.store.get(partial)).toMatchObject({ rollbackOf: `cut-${T + 1000}`, rollbackOnly: '--site "site-a"' });
      expect((await t.cli(['rollout', 'status', partial])).stdout).toContain(`rollback of cut-${T + 1000} (only --site "site-a")`);
      const now = await watts();
      for (const [id, w] of Object.entries(now)) expect(w).toBe(siteOf.get(id) === 'site-a' ? original[id] : 2200);
      // The restore tick does not take the partial rollback for the whole: site-b comes back too.
      expect(await t.tick('uncut', T + 2_000)).toEqual({ started: `uncut-${T + 2000}` });
      await t.settled(`uncut-${T + 2000}`);
      expect(await watts()).toEqual(original);
      const bad = await t.cli(['rollout', 'rollback', `cut-${T + 1000}`, '--tag', 'no-such-rack', '--yes']);
      expect(bad.stderr).toContain(`--tag "no-such-rack": rollout cut-${T + 1000} changed no miner with that tag`);
    });
  });

  it('refuses what cannot be rolled back, naming the option and the value', async () => {
    const prefix = uniquePrefix('restore-bad');
    const cli = (args: string[]) => runCli([...args, '--redis', redisUrl(), '--prefix', prefix]);
    await cli(['schedule', 'add', 'poll', '--inventory', cf.files.inventory, '--id', 'polls', ...NEVER]);
    await cli(['schedule', 'add', 'rollout', '--inventory', cf.files.inventory, '--action', 'reboot', '--id', 'reboots', ...NEVER]);
    await cli(['schedule', 'add', 'rollout', '--inventory', cf.files.inventory, '--power-target', '2000', '--id', 'power', ...NEVER]);
    const cases: [string[], string][] = [
      [['--of', 'nope'], '--of "nope": no such schedule (see bos-fleet schedule list)'],
      [['--of', 'polls'], '--of "polls" is a poll schedule: only a rollout schedule\'s changes can be rolled back'],
      [['--of', 'reboots'], '--of "reboots" reboots its miners: a reboot cannot be rolled back'],
      [['--of', 'power', '--pool-password-ref', 'ops'], '--pool-password-ref goes with the rollback of a pools schedule; power changes power target 2000 W'],
      [['--of', 'power', '--id', 'power'], '--of "power" is this schedule\'s own --id'],
    ];
    for (const [args, message] of cases) {
      const r = await cli(['schedule', 'add', 'rollback', ...args, ...NEVER]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toContain(message);
    }
  });
});

// A Redis that keeps its connections open but stops answering (here: its process SIGSTOPped): no
// error reaches ioredis, so without a probe every command would wait without a word. Commands say
// so, and an interrupted poll with nothing in flight stops instead of waiting for it.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunStore } from '../src/fleet/run-store.js';
import { startRedisServer, type LocalRedis } from '../src/redis/server.js';
import { withOwnRedis } from './helpers/own-redis.js';
import { stallAfterMs, watchStalls } from '../src/redis/stall.js';
import { expectExit, runCli, spawnCli, startCliFleet, startWaitingRollout, writeFleetFiles, type CliFleet } from './helpers/cli.js';
import { until } from './helpers/until.js';
import { appliedWritesPerMiner, withFaults, powerTargetPlan } from './helpers/fleet.js';
import { startRollout } from '../src/rollout/create.js';
import { waitForRollout } from '../src/rollout/wait.js';
import { RolloutStore, waveRunId } from '../src/rollout/store.js';

let cf: CliFleet;

beforeAll(async () => {
  cf = await startCliFleet(5, '127.28.0.1');
});
afterAll(() => cf.close());

const freeze = (server: LocalRedis) => void server.process.kill('SIGSTOP');
const thaw = (server: LocalRedis) => void server.process.kill('SIGCONT');

describe('a Redis that stops answering', () => {
  it('is said once when a probe goes unanswered on a connected Redis, and once when it answers again; a Redis that is gone is not stalled', async () => {
    await withOwnRedis('stall', async ({ server }) => {
      const redis = new Redis(server.url, { maxRetriesPerRequest: null });
      redis.on('error', () => undefined);
      const lines: string[] = [];
      const watch = watchStalls(redis, 'test', 'waiting', { afterMs: 600, probeEveryMs: 100, write: (l) => lines.push(l) });
      try {
        await until(async () => redis.status === 'ready', 5_000, 20);
        await new Promise((r) => setTimeout(r, 800));
        expect(watch.stalled()).toBe(false);
        expect(lines).toEqual([]);
        freeze(server);
        await until(async () => watch.stalled(), 5_000, 20);
        await until(async () => lines.length === 1, 2_000, 20);
        expect(lines[0]).toMatch(/^test: WARNING: Redis has not answered for \d s, though connected: it is frozen, busy \(a long script or save\), or cut off from this host without the connection closing; waiting$/);
        await new Promise((r) => setTimeout(r, 500));
        expect(lines).toHaveLength(1); // said once per stall, not per probe
        thaw(server);
        await until(async () => lines.length === 2, 5_000, 20);
        expect(lines[1]).toMatch(/^test: Redis answers again \(after \d+ s without an answer\)$/);
        expect(watch.stalled()).toBe(false);
        // Gone (its connection closed): ioredis reports that, and the probe waits for the reconnect.
        server.process.kill('SIGKILL');
        await until(async () => redis.status !== 'ready', 5_000, 20);
        await new Promise((r) => setTimeout(r, 1_000));
        expect(watch.stalled()).toBe(false);
        expect(watch.unansweredMs()).toBe(0);
        expect(lines).toHaveLength(2);
      } finally {
        watch.stop();
        redis.disconnect();
      }
    });
  });

  it('a probe left unanswered when the connection dropped counts from the reconnect, not from before the outage', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-stall-'));
    let server = await startRedisServer({ dir });
    const redis = new Redis(server.url, { maxRetriesPerRequest: null, retryStrategy: () => 50 });
    redis.on('error', () => undefined);
    let t = 0;
    const lines: string[] = [];
    const watch = watchStalls(redis, 'test', 'waiting', { afterMs: 1_000, probeEveryMs: 20, write: (l) => lines.push(l), now: () => t });
    try {
      await until(async () => redis.status === 'ready', 5_000, 20);
      freeze(server);
      await new Promise((r) => setTimeout(r, 100)); // a probe is sent, and left unanswered
      t = 500;
      expect(watch.unansweredMs()).toBe(500);
      // The frozen Redis dies (its connection closes) and is started again a minute later.
      server.process.kill('SIGKILL');
      await until(async () => redis.status !== 'ready', 5_000, 20);
      t = 60_000;
      const atReady = new Promise<number>((resolve) => redis.once('ready', () => resolve(watch.unansweredMs())));
      server = await startRedisServer({ dir, port: server.port });
      // As it is ready again the probe is resent, and has waited nothing yet.
      expect(await atReady).toBeLessThan(1_000);
      await until(async () => watch.unansweredMs() === 0, 5_000, 20);
      expect(lines).toEqual([]);
    } finally {
      watch.stop();
      redis.disconnect();
      thaw(server);
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('BOS_FLEET_REDIS_STALL_S is read in seconds, and a bad value is refused by name', async () => {
    expect(stallAfterMs({})).toBe(15_000);
    expect(stallAfterMs({ BOS_FLEET_REDIS_STALL_S: '2.5' })).toBe(2_500);
    for (const bad of ['0', '-3', 'soon']) expect(() => stallAfterMs({ BOS_FLEET_REDIS_STALL_S: bad })).toThrow(`BOS_FLEET_REDIS_STALL_S must be a number of seconds above 0, got "${bad}"`);
    const r = await runCli(['runs', '--redis', 'redis://127.0.0.1:1'], { BOS_FLEET_REDIS_STALL_S: 'soon' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('BOS_FLEET_REDIS_STALL_S must be a number of seconds above 0, got "soon"');
  });

  it('that does not answer as a command connects is said, and the command goes on once it answers', async () => {
    await withOwnRedis('stall', async ({ server, queue, started }) => {
      freeze(server);
      const runs = spawnCli(['runs', '--redis', server.url, '--prefix', queue.opts.prefix!], { BOS_FLEET_REDIS_STALL_S: '1' });
      started.push(runs);
      await until(async () => runs.output().stderr.includes('has not answered'), 15_000, 20).catch((err: Error) => {
        throw new Error(`${err.message}: ${JSON.stringify(runs.output())}`);
      });
      expect(runs.output().stderr).toContain(
        `bos-fleet: WARNING: Redis at ${server.url} has not answered for 1 s after connecting: it is frozen, busy (loading its data, a long script or save), or cut off from this host; still waiting (Ctrl-C to stop)`,
      );
      expect(runs.exitCode).toBeNull();
      thaw(server);
      await expectExit(runs, 0, { within: 20_000 });
      expect(runs.output().stdout).toMatch(/no runs yet/i);
    });
  });

  it('interrupting a poll with no job in flight stops it at once, saying where the run is, instead of waiting for Redis', async () => {
    const miners = cf.tf.inventory.targets.slice(0, 2);
    await withFaults(cf.tf.fleet, miners.map((m) => m.minerId), { refuse: true }, () =>
      withOwnRedis('stall', async ({ server, redis, queue, started }) => {
        const prefix = queue.opts.prefix!;
        const poll = spawnCli(
          ['poll', '--inventory', cf.files.inventory, ...miners.flatMap((m) => ['--miner', m.minerId]), '--credentials', cf.files.credentials, '--redis', server.url, '--prefix', prefix, '--json'],
          { BOS_FLEET_REDIS_STALL_S: '1' },
        );
        started.push(poll);
        // Both failed their first attempt and wait out the job backoff: nothing is in flight.
        await until(async () => (await queue.getDelayedCount()) === 2, 20_000, 10);
        const runId = (await new RunStore(redis, prefix).listRuns())[0]!.runId;
        freeze(server);
        await until(async () => /WARNING: Redis has not answered for \d s, though connected/.test(poll.output().stderr), 10_000, 20).catch((err: Error) => {
          throw new Error(`${err.message}: ${JSON.stringify(poll.output())}`);
        });
        poll.kill('SIGINT');
        await expectExit(poll, 130, { within: 15_000 });
        expect(poll.output().stderr).toContain(`bos-fleet: interrupted while Redis is unreachable or not answering: run ${runId} stays in Redis as it is (0 of 2 miners had an outcome at the last read)`);
        // Nothing was lost: once Redis answers, both miners are still queued.
        thaw(server);
        expect(await queue.getDelayedCount()).toBe(2);
        expect((await new RunStore(redis, prefix).getCounts(runId)).done).toBe(0);
      }),
    );
  });

  it('interrupting rollout start --wait with no local worker stops it at once, saying the rollout stays in Redis, instead of waiting for Redis', async () => {
    await withOwnRedis('stall', async ({ server, redis, queue, started }) => {
      const prefix = queue.opts.prefix!;
      // No worker runs: the rollout waits in Redis, and so does this command. Its connection stays open.
      const { start, rolloutId } = await startWaitingRollout({ files: cf.files, minerId: cf.tf.inventory.targets[0]!.minerId, redis, redisUrl: server.url, prefix, started });
      freeze(server);
      start.kill('SIGINT');
      await expectExit(start, 130, { within: 15_000 });
      expect(start.output().stderr).toContain(`bos-fleet: interrupted while Redis is unreachable or not answering: rollout ${rolloutId} stays in Redis as it is`);
      // Nothing was lost: once Redis answers, the rollout is there, still running.
      thaw(server);
      const report = await new RolloutStore(redis, prefix).status(rolloutId);
      expect(report?.state).toBe('running');
    });
  });

  it('a poll whose jobs in flight wait for a frozen Redis says so, and once it answers they record their outcomes and the poll ends', async () => {
    const miners = cf.tf.inventory.targets.slice(2, 5);
    // Each reply takes 1 s: the jobs are in flight when Redis freezes.
    await withFaults(cf.tf.fleet, miners.map((m) => m.minerId), { slow: { latencyMs: 1_000 } }, () =>
      withOwnRedis('stall', async ({ server, redis, queue, started }) => {
        const prefix = queue.opts.prefix!;
        const poll = spawnCli(
          ['poll', '--inventory', cf.files.inventory, ...miners.flatMap((m) => ['--miner', m.minerId]), '--credentials', cf.files.credentials, '--redis', server.url, '--prefix', prefix, '--concurrency', '2', '--json'],
          { BOS_FLEET_REDIS_STALL_S: '1' },
        );
        started.push(poll);
        await until(async () => (await queue.getActiveCount()) === 2, 20_000, 10);
        const runId = (await new RunStore(redis, prefix).listRuns())[0]!.runId;
        freeze(server);
        await until(async () => /WARNING: Redis has not answered for \d s, though connected/.test(poll.output().stderr), 10_000, 20);
        poll.kill('SIGINT');
        await until(async () => poll.output().stderr.includes('bos-fleet: Redis is unreachable or not answering: the 2 jobs in flight wait for it to record their outcomes'), 10_000, 20).catch((err: Error) => {
          throw new Error(`${err.message}: ${JSON.stringify(poll.output())}`);
        });
        expect(poll.exitCode).toBeNull();
        thaw(server);
        await expectExit(poll, 130, { within: 20_000 });
        expect(poll.output().stderr).toMatch(/Redis answers again \(after \d+ s without an answer\)/);
        expect(JSON.parse(poll.output().stdout)).toMatchObject({ runId, total: 3, counts: { OK: 2 } });
        expect((await new RunStore(redis, prefix).getCounts(runId)).done).toBe(2);
        expect(await queue.getJobCountByTypes('waiting', 'prioritized')).toBe(1);
      }),
    );
  });

  it('interrupting a poll whose run is still being enqueued names the run, which holds some of its miners', async () => {
    // 30,000 miners at addresses where nothing listens (each poll fails at once): the enqueue takes seconds.
    const files = writeFleetFiles(['id,host', ...Array.from({ length: 30_000 }, (_, i) => `m${i},127.29.${Math.floor(i / 250) + 1}.${(i % 250) + 1}`)].join('\n'));
    try {
      await withOwnRedis('stall', async ({ server, redis, queue, started }) => {
        const prefix = queue.opts.prefix!;
        const poll = spawnCli(['poll', '--inventory', files.inventory, '--credentials', files.credentials, '--redis', server.url, '--prefix', prefix, '--json'], { BOS_FLEET_REDIS_STALL_S: '1' });
        started.push(poll);
        const store = new RunStore(redis, prefix);
        let runId: string | undefined;
        await until(async () => (runId = (await store.listRuns())[0]?.runId) !== undefined && (await queue.count()) > 0, 20_000, 5);
        freeze(server);
        await until(async () => /WARNING: Redis has not answered for \d s, though connected/.test(poll.output().stderr), 10_000, 20);
        poll.kill('SIGINT');
        await expectExit(poll, 130, { within: 20_000 });
        expect(poll.output().stderr).toContain(
          `bos-fleet: interrupted while Redis is unreachable or not answering, with run ${runId} (30000 miners) still being enqueued: it holds none, some or all of its miners. Once Redis is back, \`bos-fleet runs --redis ${server.url} --prefix '${prefix}'\` lists it if it got in`,
        );
        thaw(server);
        // What got in is there, and nothing more was added once the command stopped.
        const jobs = await queue.getJobCountByTypes('wait', 'prioritized', 'delayed', 'active', 'completed', 'failed');
        expect(jobs).toBeGreaterThan(0);
        expect(jobs).toBeLessThan(30_000);
        expect((await store.getRun(runId!))?.runId).toBe(runId);
      });
    } finally {
      rmSync(files.dir, { recursive: true, force: true });
    }
  });

  it("a rollout whose Redis freezes past its jobs' locks changes each miner once, with one outcome each saying so, and the worker's log says it once per kind", async () => {
    const miners = cf.tf.fleet.miners;
    await withFaults(cf.tf.fleet, miners.map((m) => m.id), { slow: { latencyMs: 400 } }, () =>
      withOwnRedis('stall', async ({ server, redis, queue, started }) => {
        const prefix = queue.opts.prefix!;
        const before = new Map(await Promise.all(miners.map(async (m) => [m.id, (await cf.tf.fleet.state(m.id)).powerTargetW] as const)));
        const rec = await startRollout(redis, powerTargetPlan(cf.tf, 2_410, { maxFailureRate: 0.5, minSample: 1 }), prefix);
        const worker = spawnCli(['worker', '--redis', server.url, '--prefix', prefix, '--credentials', cf.files.credentials, '--concurrency', '5', '--lock-ms', '2000'], { BOS_FLEET_REDIS_STALL_S: '1' });
        started.push(worker);
        const to2410 = (r: unknown) => (r as { powerTarget: { watt: number } }).powerTarget.watt === 2_410;
        await until(async () => (await appliedWritesPerMiner(cf.tf.fleet, 'SetPowerTarget', to2410)).size >= 1, 30_000, 5);
        freeze(server);
        await new Promise((r) => setTimeout(r, 5_000)); // past the 2 s locks of the jobs in flight
        thaw(server);
        const report = await waitForRollout(redis, rec.rolloutId, prefix);
        expect(report.counts).toEqual({ OK: miners.length });
        const outcomes = await new RunStore(redis, prefix).getOutcomes(waveRunId(rec.rolloutId, 0));
        expect(outcomes.map((o) => o.minerId).sort()).toEqual(miners.map((m) => m.id).sort());
        for (const o of outcomes) {
          expect({ miner: o.minerId, data: o.data }).toEqual({ miner: o.minerId, data: { change: 'applied', before: { powerTargetWatts: before.get(o.minerId) }, after: { powerTargetWatts: 2_410 }, verified: true } });
        }
        expect([...(await appliedWritesPerMiner(cf.tf.fleet, 'SetPowerTarget', to2410)).values()]).toEqual(miners.map(() => 1));
        const log = worker.output().stderr;
        expect(log).toMatch(/worker: WARNING: Redis has not answered for \d s, though connected/);
        expect(log).toMatch(/worker: Redis answers again/);
        // Once per kind and consumer group (jobs, control): a lock lost at moveToFinished is often lost
        // again at the retry's moveToDelayed, another kind (error-log.test.ts).
        for (const kind of [/could not renew lock for job/g, /Missing lock for job \S+ moveToFinished/g, /Missing lock for job \S+ moveToDelayed/g]) {
          expect(log.match(kind)?.length ?? 0, log).toBeLessThanOrEqual(2);
        }
        worker.kill('SIGTERM');
        await expectExit(worker, 0, { within: 20_000 });
      }),
    );
  });
});

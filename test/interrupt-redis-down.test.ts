// Foreground commands (poll, rollout start --wait) interrupted while their Redis is down: with nothing
// in flight they stop at once and say where the work is; jobs in flight wait for Redis to record
// their outcomes, and the command stops once they have. Nothing is lost either way.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunStore } from '../src/fleet/run-store.js';
import type { LocalRedis } from '../src/redis/server.js';
import { withOwnRedis } from './helpers/own-redis.js';
import { exitedWithin, expectExit, spawnCli, startCliFleet, startWaitingRollout, type CliFleet } from './helpers/cli.js';
import { appliedWritesPerMiner, withFaults } from './helpers/fleet.js';
import { waveRunId } from '../src/rollout/store.js';
import { until } from './helpers/until.js';

let cf: CliFleet;

beforeAll(async () => {
  cf = await startCliFleet(9, '127.26.0.1');
});
afterAll(() => cf.close());

async function kill(server: LocalRedis): Promise<void> {
  server.process.kill('SIGKILL');
  await new Promise((r) => (server.process.exitCode !== null || server.process.signalCode !== null ? r(undefined) : server.process.once('exit', r)));
}

const runIdOf = async (store: RunStore): Promise<string> => {
  let id: string | undefined;
  await until(async () => (id = (await store.listRuns()).at(0)?.runId) !== undefined, 10_000, 20);
  return id!;
};

describe('poll interrupted while Redis is down', () => {
  it('with no job in flight (its miners waiting out a job backoff) stops at once, saying where the run is; a worker finishes it once Redis is back', async () => {
    const miners = cf.tf.inventory.targets.slice(0, 2);
    await withFaults(cf.tf.fleet, miners.map((m) => m.minerId), { refuse: true }, () =>
      withOwnRedis('int-down', async ({ server, redis, queue, started, restart }) => {
        const prefix = queue.opts.prefix!;
        const poll = spawnCli(['poll', '--inventory', cf.files.inventory, ...miners.flatMap((m) => ['--miner', m.minerId]), '--credentials', cf.files.credentials, '--redis', server.url, '--prefix', prefix, '--json']);
        started.push(poll);
        // Both failed their first attempt and wait out the job backoff: nothing is in flight.
        await until(async () => (await queue.getDelayedCount()) === 2, 20_000, 10);
        const runId = await runIdOf(new RunStore(redis, prefix));
        await kill(server);
        poll.kill('SIGINT');
        await expectExit(poll, 130, { within: 20_000 });
        expect(poll.output().stderr).toContain(
          `bos-fleet: interrupted while Redis is unreachable or not answering: run ${runId} stays in Redis as it is (0 of 2 miners had an outcome at the last read); once Redis is back, \`bos-fleet results ${runId} --redis ${server.url} --prefix '${prefix}'\` shows its outcomes`,
        );
        // Back, with the miners answering: a worker polls both, once each.
        await restart();
        for (const m of miners) await cf.tf.fleet.setFaults(m.minerId, {});
        const worker = spawnCli(['worker', '--redis', server.url, '--prefix', prefix, '--credentials', cf.files.credentials]);
        started.push(worker);
        const store = new RunStore(redis, prefix);
        await until(async () => (await store.getCounts(runId)).done === 2, 30_000);
        expect((await store.getCounts(runId)).counts).toEqual({ OK: 2 });
        expect((await store.getOutcomes(runId)).map((o) => o.minerId).sort()).toEqual(miners.map((m) => m.minerId).sort());
        worker.kill('SIGTERM');
        await expectExit(worker, 0, { within: 20_000 });
      }),
    );
  });

  it('(not interrupted) whose Redis goes away as it starts says so, and where to look once Redis is back', async () => {
    await withOwnRedis('int-down', async ({ server, redis, queue, started }) => {
      const prefix = queue.opts.prefix!;
      // Redis holds every write: the poll is starting up when Redis goes.
      await redis.call('CLIENT', 'PAUSE', '10000', 'WRITE');
      const poll = spawnCli(['poll', '--inventory', cf.files.inventory, '--miner', cf.tf.inventory.targets[0]!.minerId, '--credentials', cf.files.credentials, '--redis', server.url, '--prefix', prefix, '--json']);
      started.push(poll);
      await until(async () => poll.output().stderr.includes('1 of the 9 miners'), 10_000, 20);
      await new Promise((r) => setTimeout(r, 1_000));
      await kill(server);
      await expectExit(poll, 1, { within: 20_000 });
      expect(poll.output().stderr).toContain(
        'bos-fleet: Command aborted due to connection close — the connection to Redis closed under it (Redis stopped, restarted or unreachable): once Redis runs, `bos-fleet runs` and `bos-fleet rollout status` show what got in before running it again',
      );
    });
  });

  it('with jobs in flight says they wait for Redis; once it is back they record their outcomes and the poll stops with its summary', async () => {
    const miners = cf.tf.inventory.targets.slice(2, 5);
    // Each reply takes 1 s: a poll of one miner lasts seconds.
    await withFaults(cf.tf.fleet, miners.map((m) => m.minerId), { slow: { latencyMs: 1_000 } }, () =>
      withOwnRedis('int-down', async ({ server, redis, queue, started, restart }) => {
        const prefix = queue.opts.prefix!;
        const poll = spawnCli(['poll', '--inventory', cf.files.inventory, ...miners.flatMap((m) => ['--miner', m.minerId]), '--credentials', cf.files.credentials, '--redis', server.url, '--prefix', prefix, '--concurrency', '2', '--json']);
        started.push(poll);
        await until(async () => (await queue.getActiveCount()) === 2, 20_000, 10);
        const runId = await runIdOf(new RunStore(redis, prefix));
        await kill(server);
        poll.kill('SIGINT');
        await until(async () => poll.output().stderr.includes('bos-fleet: Redis is unreachable or not answering: the 2 jobs in flight wait for it to record their outcomes'), 15_000).catch((err: Error) => {
          throw new Error(`${err.message}: ${JSON.stringify(poll.output())}`);
        });
        expect(poll.exitCode).toBeNull();
        await restart();
        // Back: the two record their outcomes, and the poll stops (past BullMQ's close, which can hang after an outage).
        await expectExit(poll, 130, { within: 20_000 });
        expect(JSON.parse(poll.output().stdout)).toMatchObject({ runId, total: 3, counts: { OK: 2 } });
        expect(poll.output().stderr).toContain(`interrupted: 1 of 3 miners not polled; their jobs stay queued`);
        const store = new RunStore(redis, prefix);
        expect((await store.getCounts(runId)).done).toBe(2);
        expect(await queue.getActiveCount()).toBe(0);
      }),
    );
  });
});

describe('rollout start --dry-run interrupted while Redis is down', () => {
  it('with no read in flight stops at once, saying how to drop the reads left once Redis is back', async () => {
    const miners = cf.tf.inventory.targets.slice(0, 2);
    await withFaults(cf.tf.fleet, miners.map((m) => m.minerId), { refuse: true }, () =>
      withOwnRedis('int-down', async ({ server, redis, queue, started }) => {
        const prefix = queue.opts.prefix!;
        const dry = spawnCli(['rollout', 'start', '--dry-run', '--power-target', '2600', '--inventory', cf.files.inventory, ...miners.flatMap((m) => ['--miner', m.minerId]), '--credentials', cf.files.credentials, '--redis', server.url, '--prefix', prefix]);
        started.push(dry);
        // Both failed their first read and wait out the job backoff: nothing is in flight.
        await until(async () => (await queue.getDelayedCount()) === 2, 20_000, 10);
        const runId = await runIdOf(new RunStore(redis, prefix));
        await kill(server);
        dry.kill('SIGINT');
        await expectExit(dry, 130, { within: 20_000 });
        expect(dry.output().stderr).toContain(
          `bos-fleet: interrupted while Redis is unreachable or not answering: the dry run's reads left could not be dropped; once Redis is back, \`bos-fleet cancel ${runId} --redis ${server.url} --prefix '${prefix}'\` drops them`,
        );
      }),
    );
  });
});

describe('rollout start --wait interrupted while Redis is down', () => {
  it('stops at once, saying the rollout stays in Redis and how to hold or stop it', async () => {
    await withOwnRedis('int-down', async ({ server, redis, queue, started }) => {
      const prefix = queue.opts.prefix!;
      // No worker runs: the rollout waits in Redis, and so does this command.
      const { start, rolloutId } = await startWaitingRollout({ files: cf.files, minerId: cf.tf.inventory.targets[5]!.minerId, redis, redisUrl: server.url, prefix, started });
      await kill(server);
      start.kill('SIGINT');
      await expectExit(start, 130, { within: 20_000 });
      expect(start.output().stderr).toContain(
        `bos-fleet: interrupted while Redis is unreachable or not answering: rollout ${rolloutId} stays in Redis as it is, and goes on as soon as Redis is back and a \`bos-fleet worker\` runs on it. Then \`bos-fleet rollout status ${rolloutId} --redis ${server.url} --prefix '${prefix}'\` shows it`,
      );
    });
  });

  it('a Ctrl-C while the rollout is being started lets the start finish, and names the rollout (Redis up)', async () => {
    await withOwnRedis('int-down', async ({ server, redis, queue, started }) => {
      const prefix = queue.opts.prefix!;
      // Redis holds every write for 6 s: the command is inside the start when the Ctrl-C comes, even
      // on a loaded machine where starting the CLI and reading the inventory take a few seconds (with
      // 3 s the start had once finished, and warned, by the time of the check).
      await redis.call('CLIENT', 'PAUSE', '6000', 'WRITE');
      const start = spawnCli(['rollout', 'start', '--power-target', '2600', '--inventory', cf.files.inventory, '--miner', cf.tf.inventory.targets[5]!.minerId, '--wait', '--no-local-worker', '--redis', server.url, '--prefix', prefix]);
      started.push(start);
      await until(async () => start.output().stderr.includes('1 of the 9 miners'), 10_000, 20);
      await new Promise((r) => setTimeout(r, 1_000));
      expect(start.output().stderr).not.toContain('WARNING'); // still starting
      start.kill('SIGINT');
      await expectExit(start, 130, { within: 20_000 });
      const rolloutId = (await redis.keys(`${prefix}:rollout:ro-*`)).map((k) => k.split(':')[2]).at(0);
      expect(start.output().stderr).toContain(`bos-fleet: interrupted: rollout ${rolloutId} is still running in Redis`);
    });
  });

  it('with miners being changed by its own worker: they wait for Redis (said), then each is verified and recorded once, and the command stops', async () => {
    const miners = cf.tf.inventory.targets.slice(6, 9);
    const ours = (r: unknown) => (r as { powerTarget: { watt: number } }).powerTarget.watt === 2610;
    // Each reply takes 1 s: a change (reads, write, read-back) lasts seconds.
    await withFaults(cf.tf.fleet, miners.map((m) => m.minerId), { slow: { latencyMs: 1_000 } }, () =>
      withOwnRedis('int-down', async ({ server, redis, queue, started, restart }) => {
        const prefix = queue.opts.prefix!;
        const start = spawnCli(['rollout', 'start', '--power-target', '2610', '--waves', '100%', '--inventory', cf.files.inventory, ...miners.flatMap((m) => ['--miner', m.minerId]), '--credentials', cf.files.credentials, '--wait', '--redis', server.url, '--prefix', prefix]);
        started.push(start);
        await until(async () => (await queue.getActiveCount()) === 3, 20_000, 10);
        const rolloutId = (await redis.keys(`${prefix}:rollout:ro-*`)).map((k) => k.split(':')[2]).at(0)!;
        await kill(server);
        start.kill('SIGINT');
        // In flight: the three changes, and the rollout's own step watching its wave.
        await until(async () => /bos-fleet: Redis is unreachable or not answering: the [34] jobs in flight \(miners being changed, the rollout's own steps\) wait for it to record their results/.test(start.output().stderr), 15_000).catch((err: Error) => {
          throw new Error(`${err.message}: ${JSON.stringify(start.output())}`);
        });
        expect(start.exitCode).toBeNull();
        await restart();
        // Back: the three record their outcomes; the command stops (the rollout stays for a worker to finish).
        expect([0, 130]).toContain(await exitedWithin(start));
        expect(start.output().stdout).toContain(`rollout ${rolloutId}  power-target`);
        const outcomes = await new RunStore(redis, prefix).getOutcomes(waveRunId(rolloutId, 0));
        expect(outcomes.map((o) => [o.minerId, o.code]).sort()).toEqual(miners.map((m) => [m.minerId, 'OK']).sort());
        const writes = await appliedWritesPerMiner(cf.tf.fleet, 'SetPowerTarget', ours);
        expect(miners.map((m) => writes.get(m.minerId))).toEqual([1, 1, 1]);
      }),
    );
  });
});

// A worker frozen in the middle of a change (SIGSTOP here; a suspended laptop running `rollout start
// --wait`, a paused VM) loses its job's lock; another worker takes the job over and finishes it. When
// the frozen one wakes, its change must not reach the miner: by then the rollout may be rolled back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JOURNAL_UNLESS_STOPPED } from '../src/fleet/journal.js';
import { RunStore } from '../src/fleet/run-store.js';
import { startRollout } from '../src/rollout/create.js';
import { waitForRollout } from '../src/rollout/wait.js';
import { waveRunId } from '../src/rollout/store.js';
import { exited, runCli, spawnCli, startCliFleet, type CliFleet, type FleetFiles } from './helpers/cli.js';
import type { TestFleet } from './helpers/fleet.js';
import { withOwnRedis } from './helpers/own-redis.js';
import { startHoldingProxy } from './helpers/redis.js';
import { until } from './helpers/until.js';

let cf: CliFleet;
let tf: TestFleet;
let files: FleetFiles;
beforeAll(async () => {
  // Every reply takes 400 ms: the frozen worker is caught between its read of the miner and its write.
  ({ tf, files } = cf = await startCliFleet(1, '127.39.0.1', () => ({ slow: { latencyMs: 400 } })));
});
afterAll(() => cf.close());

describe('a worker frozen mid-change', () => {
  it('never writes its change after it woke: another worker took the job over, and a rollback since is kept', () =>
    // A Redis of its own, reached by the frozen worker through a proxy.
    withOwnRedis('frozen', async ({ server, redis, queue }) => {
      const prefix = queue.opts.prefix!;
      const m = tf.fleet.miners[0]!;
      const original = (await tf.fleet.state(m.id)).powerTargetW;
      const rec = await startRollout(
        redis,
        { operation: 'power-target', spec: { kind: 'power-target', watts: 2350 }, targets: tf.inventory.targets, inventoryDigest: tf.inventory.digest, waves: [1], maxFailureRate: 0.5, minSample: 1, pauseBetweenMs: 0, actor: 'test' },
        prefix,
      );
      const store = new RunStore(redis, prefix);
      const runId = waveRunId(rec.rolloutId, 0);
      // The frozen worker reaches Redis through a proxy that holds Redis's answer to its journal entry
      // (the step before its write to the miner): frozen while it waits for it, it gets it only on waking.
      const proxy = await startHoldingProxy(server.port, JOURNAL_UNLESS_STOPPED);
      const args = (url: string) => ['worker', '--redis', url, '--prefix', prefix, '--credentials', files.credentials, '--concurrency', '1', '--threads', '0', '--lock-ms', '2000'];
      const writes = async () => (await tf.fleet.mutations(m.id)).filter((w) => w.method === 'SetPowerTarget' && w.result === 'applied').length;
      const frozen = spawnCli(args(proxy.url));
      let other: ReturnType<typeof spawnCli> | undefined;
      try {
        let sent = false;
        void proxy.seen.then(() => (sent = true));
        await until(async () => sent || frozen.exitCode !== null, 30_000, 2);
        expect(sent, frozen.output().stderr).toBe(true); // not a worker that ended first
        frozen.kill('SIGSTOP');
        proxy.release();
        await until(async () => (await store.journaled(runId, m.id)) !== undefined, 5_000, 20);
        expect(await writes()).toBe(0);

        // Another worker takes the job over once its lock expired, and changes the miner.
        other = spawnCli(args(server.url));
        expect((await waitForRollout(redis, rec.rolloutId, prefix)).counts).toEqual({ OK: 1 });
        expect((await tf.fleet.state(m.id)).powerTargetW).toBe(2350);
        // The change is rolled back.
        const back = await runCli(['rollout', 'rollback', rec.rolloutId, '--redis', server.url, '--prefix', prefix, '--waves', '100%', '--yes', '--wait', '--json', '--no-local-worker']);
        expect(back.code, back.stderr).toBe(0);
        expect((await tf.fleet.state(m.id)).powerTargetW).toBe(original);
        expect(await writes()).toBe(2);

        // The frozen worker wakes: its change is never written.
        frozen.kill('SIGCONT');
        const givenUp = `worker: job of miner ${m.id} (run ${runId}) lost its lock while this worker was stopped for longer than the lock lasts (frozen, suspended or cut off from Redis): its change was not sent from here; the job runs again on whichever worker takes it up (another may have done it already)`;
        await until(async () => frozen.output().stderr.includes(givenUp), 10_000, 20);
        await new Promise((r) => setTimeout(r, 500)); // a write sent anyway would have landed by now
        expect(await writes()).toBe(2);
        expect((await tf.fleet.state(m.id)).powerTargetW).toBe(original);
        expect((await store.getOutcomes(runId)).map((o) => o.code)).toEqual(['OK']);
      } finally {
        frozen.kill('SIGCONT');
        for (const w of [frozen, other]) {
          if (!w) continue;
          w.kill('SIGKILL');
          await exited(w);
        }
        await proxy.close();
      }
    }), 90_000);
});

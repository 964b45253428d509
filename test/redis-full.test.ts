// A Redis with maxmemory and noeviction refuses writes once full. A run that would not fit is refused
// whole before anything is written; one that Redis refuses part-way is named with what got in.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAME } from '../src/fleet/keys.js';
import { RunStore } from '../src/fleet/run-store.js';
import { cancelRun } from '../src/producer/cancel.js';
import { RedisFullError, enqueueRun } from '../src/producer/enqueue.js';
import { parseInventory } from '../src/producer/inventory.js';
import { headroomProblem, REDIS_BYTES_PER_MINER } from '../src/redis/durability.js';
import { freePort, startRedisServer, waitForRedis, type LocalRedis } from '../src/redis/server.js';
import { cutShort } from '../src/cli/render.js';
import { exited, runCli, spawnCli, writeFleetFiles } from './helpers/cli.js';
import { until } from './helpers/until.js';

let dir: string;
let server: LocalRedis;
let redis: Redis;
beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-full-'));
  server = await startRedisServer({ dir });
  redis = new Redis(server.url, { maxRetriesPerRequest: null });
});
afterAll(async () => {
  redis.disconnect();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

const farm = (n: number) => parseInventory(['id,host', ...Array.from({ length: n }, (_, i) => `m${i},127.23.${Math.floor(i / 250) + 1}.${(i % 250) + 1}`)].join('\n'), 'farm.csv');
const usedBytes = async () => Number(/^used_memory:(\d+)/m.exec(await redis.info('memory'))?.[1]);
/** An enqueue's paramsFor that fills Redis up (maxmemory = memory used) once it reaches `minerId`. */
function fillRedisAt(minerId: string): (t: { minerId: string }) => Record<string, unknown> {
  let filled = false;
  return (t) => {
    if (t.minerId === minerId && !filled) {
      filled = true;
      void usedBytes().then((u) => redis.config('SET', 'maxmemory', String(u)));
    }
    return {};
  };
}

describe('a Redis near its maxmemory', () => {
  it('refuses a run that would not fit, naming the figures, with nothing written', async () => {
    await redis.config('SET', 'maxmemory', String((await usedBytes()) + 2 * 1_048_576));
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix: 'full-a' });
    const store = new RunStore(redis, 'full-a');
    try {
      const err = await enqueueRun(queue, store, farm(2_000), { operation: 'poll' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RedisFullError);
      expect((err as Error).message).toMatch(/^Redis has 2\.0 MB free under its maxmemory of [\d.]+ MB \([\d.]+ MB used\), and a run of 2,000 miners needs about 6\.9 MB/);
      expect((err as Error).message).toContain('Nothing was enqueued.');
      expect(await store.listRuns()).toEqual([]);
      expect(await queue.count()).toBe(0);
      // 500 fit: the same Redis takes them.
      const record = await enqueueRun(queue, store, farm(500), { operation: 'poll' });
      expect(await queue.count()).toBe(500);
      expect(record.total).toBe(500);
    } finally {
      await queue.close();
      await redis.config('SET', 'maxmemory', '0');
    }
  });

  it('names a run Redis refused part-way: which run, how many miners got in, and the run counts only those if Redis takes that', async () => {
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix: 'full-b' });
    const store = new RunStore(redis, 'full-b');
    try {
      // The check passes (no limit yet); then Redis fills up under the run, as when another tenant's data grows.
      const err = await enqueueRun(queue, store, farm(2_000), { operation: 'poll', chunkSize: 100, paramsFor: fillRedisAt('m500') }).catch((e: unknown) => e as Error);
      expect(err).toBeInstanceOf(Error);
      const runId = (await store.listRuns())[0]!.runId;
      const inRedis = await queue.count();
      expect(inRedis).toBeGreaterThanOrEqual(500);
      expect(inRedis).toBeLessThan(2_000);
      expect((err as Error).message).toContain(`run ${runId}: Redis refused its jobs after ${inRedis.toLocaleString('en-US')} of 2,000 miners (OOM command not allowed`);
      let record = (await store.getRun(runId))!;
      if ((err as Error).message.includes('the run now counts only those enqueued')) {
        expect(record).toMatchObject({ total: inRedis, inventoryTotal: 2_000 });
      } else {
        // Under OOM even the cut is refused (the usual case): cancel closes the run once Redis has room.
        expect((err as Error).message).toContain(`the run shows as unfinished until \`bos-fleet cancel ${runId}\``);
        expect(record.total).toBe(2_000);
        await redis.config('SET', 'maxmemory', '0');
        const r = await cancelRun(queue, store, runId);
        expect(r).toEqual({ runId, cancelled: inRedis, done: inRedis, total: inRedis, neverEnqueued: 2_000 - inRedis });
        record = (await store.getRun(runId))!;
        expect(record).toMatchObject({ total: inRedis, inventoryTotal: 2_000 });
      }
      expect(cutShort(record)).toMatch(new RegExp(`^CUT SHORT: only ${inRedis} of the inventory's 2000 miners were enqueued \\(`));
    } finally {
      await redis.config('SET', 'maxmemory', '0');
      await queue.close();
    }
  });

  it('a run cut short and enqueued again once Redis has room (a retried wave start or tick) is whole again', async () => {
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix: 'full-again' });
    const store = new RunStore(redis, 'full-again');
    const runId = 'ro-again-w0';
    try {
      const first = await enqueueRun(queue, store, farm(1_000), { operation: 'poll', runId, chunkSize: 100, paramsFor: fillRedisAt('m300') }).catch((e: unknown) => e as Error);
      expect(first).toBeInstanceOf(Error);
      await redis.config('SET', 'maxmemory', '0');
      // The run as its cut leaves it (recorded here when the full Redis refused even that write).
      if ((await store.getRun(runId))?.inventoryTotal === undefined) await store.closeRunAt(runId, await queue.count(), 'OOM command not allowed');
      expect((await store.getRun(runId))?.total).toBeLessThan(1_000);
      // The second pass enqueues the miners Redis refused, and the run counts them all again.
      const again = await enqueueRun(queue, store, farm(1_000), { operation: 'poll', runId, chunkSize: 100 });
      expect(again.total).toBe(1_000);
      expect(await store.getRun(runId)).toEqual(again);
      expect(again).not.toHaveProperty('inventoryTotal');
      expect(again).not.toHaveProperty('enqueueError');
      expect(await queue.count()).toBe(1_000);
    } finally {
      await redis.config('SET', 'maxmemory', '0');
      await queue.close();
    }
  });

  it('a poll makes room by deleting the finished poll runs its --keep-runs would delete anyway', async () => {
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix: 'full-c' });
    const store = new RunStore(redis, 'full-c');
    try {
      // Two finished 1,000-miner poll runs of yesterday, ~1.5 KB per outcome.
      for (const [k, runId] of ['old-1', 'old-2'].entries()) {
        const createdAtMs = Date.now() - 86_400_000 + k;
        await store.createRun({ runId, operation: 'poll', params: {}, inventoryFile: 'farm.csv', inventoryDigest: 'd', createdAt: new Date(createdAtMs).toISOString(), createdAtMs, total: 1_000 });
        for (let m = 0; m < 1_000; m++) {
          await store.writeOutcome({ runId, minerId: `m${m}`, host: '127.0.0.1', port: 50051, operation: 'poll', status: 'failed', code: 'MINER_TIMEOUT', attempts: 3, jobAttempts: 3, durationMs: 5_000, finishedAt: new Date(createdAtMs).toISOString(), transport: 'plaintext', error: { message: 'x'.repeat(1_400), suggestion: 'check the miner' } });
        }
      }
      await redis.config('SET', 'maxmemory', String((await usedBytes()) + 256 * 1024));
      const refused = await enqueueRun(queue, store, farm(400), { operation: 'poll' }).catch((e: unknown) => e as Error);
      expect(refused).toBeInstanceOf(RedisFullError); // --keep-runs 20 keeps both: no room
      expect((await store.listRuns()).map((r) => r.runId).sort()).toEqual(['old-1', 'old-2']);
      const record = await enqueueRun(queue, store, farm(400), { operation: 'poll', retention: { keepRuns: 1, keepForMs: 7 * 86_400_000 } });
      expect((await store.listRuns()).map((r) => r.runId)).toEqual([record.runId]); // both old runs went, the new one is in
      expect(await queue.count()).toBe(400);
    } finally {
      await redis.config('SET', 'maxmemory', '0');
      await queue.close();
    }
  });

  it('every command warns when Redis is over 80% of its maxmemory, with the room left in miners', async () => {
    const used = await usedBytes();
    await redis.config('SET', 'maxmemory', String(Math.round(used / 0.9)));
    try {
      const r = await runCli(['runs', '--prefix', 'full-d'], { REDIS_URL: server.url });
      expect(r.stderr).toMatch(/bos-fleet: WARNING: Redis is (8\d|9\d)% full \([\d.]+ MB of its maxmemory [\d.]+ MB\): [\d.]+ MB is room for about [\d,]+ more miners' jobs and outcomes/);
      await redis.config('SET', 'maxmemory', '0');
      expect((await runCli(['runs', '--prefix', 'full-d'], { REDIS_URL: server.url })).stderr).not.toContain('full');
    } finally {
      await redis.config('SET', 'maxmemory', '0');
    }
  });

  it('a running worker says so when Redis fills up under it (not only at start-up)', async () => {
    const files = writeFleetFiles('id,host\nm1,127.26.0.2\n');
    const worker = spawnCli(['worker', '--prefix', 'full-f', '--credentials', files.credentials, '--report-every', '1s', '--concurrency', '2'], { REDIS_URL: server.url });
    try {
      await until(async () => worker.output().stdout.includes(' on redis://'), 20_000, 50);
      expect(worker.output().stderr).not.toContain('WARNING');
      await redis.config('SET', 'maxmemory', String(Math.round((await usedBytes()) / 0.85)));
      await until(async () => /worker: WARNING: Redis is \d+% full/.test(worker.output().stderr), 10_000, 100);
    } finally {
      await redis.config('SET', 'maxmemory', '0');
      worker.kill('SIGTERM');
      await exited(worker);
      rmSync(files.dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('no limit, or room enough: no problem', () => {
    expect(headroomProblem({ usedBytes: 10e9, maxBytes: 0 }, 100_000)).toBeUndefined();
    expect(headroomProblem({ usedBytes: 0, maxBytes: 100_000 * REDIS_BYTES_PER_MINER }, 100_000)).toBeUndefined();
    expect(headroomProblem({ usedBytes: 1, maxBytes: 100_000 * REDIS_BYTES_PER_MINER }, 100_000)).toMatch(/needs about 343 MB/);
    expect(headroomProblem(undefined, 100_000)).toBeUndefined(); // INFO refused: nothing to judge by
  });
});

describe('a Redis that cannot save', () => {
  it('(MISCONF: disk full or not writable) is named at start-up, with what to do', async () => {
    // A Redis whose snapshots go to a directory that is gone: its save fails and, with
    // stop-writes-on-bgsave-error (the default), it refuses writes, as with a full disk.
    const home = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-misconf-'));
    const port = await freePort();
    const child = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--dir', home, '--save', '3600 1', '--appendonly', 'no', '--enable-protected-configs', 'yes', '--logfile', path.join(home, 'redis.log')], { stdio: 'ignore' });
    const url = `redis://127.0.0.1:${port}`;
    let r: Redis | undefined;
    try {
      await waitForRedis(url);
      const c = (r = new Redis(url, { maxRetriesPerRequest: null }));
      const gone = path.join(home, 'gone');
      mkdirSync(gone);
      await r.config('SET', 'dir', gone);
      rmSync(gone, { recursive: true });
      await r.bgsave().catch(() => undefined);
      await until(async () => /rdb_last_bgsave_status:err/.test(await c.info('persistence')), 10_000, 50);
      await expect(r.set('probe', '1')).rejects.toThrow(/^MISCONF/);
      const cli = await runCli(['runs'], { REDIS_URL: url });
      expect(cli.stderr).toContain("bos-fleet: WARNING: Redis's last RDB save failed (rdb_last_bgsave_status:err); with stop-writes-on-bgsave-error yes it refuses every write");
      const files = writeFleetFiles('id,host\nm1,127.26.0.1\n');
      try {
        const poll = await runCli(['poll', '--inventory', files.inventory, '--credentials', files.credentials, '--enqueue-only'], { REDIS_URL: url });
        expect(poll.code).toBe(1);
        expect(poll.stderr).toMatch(/bos-fleet: MISCONF .* — Redis refused a write\. Redis cannot save its data \(its disk is full or not writable: its log says which\) and refuses writes until it can: free disk space\.$/m);
        // In the foreground too, where the first write refused is inside a transaction (whose own
        // error says only "EXECABORT Transaction discarded because of previous errors").
        const foreground = await runCli(['poll', '--inventory', files.inventory, '--credentials', files.credentials], { REDIS_URL: url });
        expect(foreground.code).toBe(1);
        expect(foreground.stderr).toMatch(/bos-fleet: MISCONF .* — Redis refused a write\. Redis cannot save its data/m);
        expect(foreground.stderr).not.toContain('EXECABORT');
      } finally {
        rmSync(files.dir, { recursive: true, force: true });
      }
      await r.config('SET', 'dir', home);
      await r.bgsave();
      await until(async () => /rdb_last_bgsave_status:ok/.test(await c.info('persistence')), 10_000, 50);
      expect((await runCli(['runs'], { REDIS_URL: url })).stderr).not.toContain('save failed');
    } finally {
      r?.disconnect();
      const exited = new Promise((done) => child.once('exit', done));
      child.kill('SIGKILL');
      await exited;
      rmSync(home, { recursive: true, force: true });
    }
  }, 30_000);
});

// A Redis failover: the primary's name moves to the promoted replica, the old primary becomes a
// replica, and the connections already open stay on it (every write refused READONLY). A worker
// follows the name to the new primary and its run ends, every miner once.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { RunStore } from '../src/fleet/run-store.js';
import { enqueueOnly } from '../src/producer/run-local.js';
import { waitForRun } from '../src/producer/wait.js';
import { startRedisServer, type LocalRedis } from '../src/redis/server.js';
import { FAILOVER_RECONNECTS_PER_MINUTE, followFailover } from '../src/redis/failover.js';
import { closeWorker } from '../src/workers/close.js';
import { startWorker } from '../src/workers/worker.js';
import { FAST_CORE, startTestFleet, type TestFleet } from './helpers/fleet.js';
import { startRedisName, uniquePrefix } from './helpers/redis.js';
import { until } from './helpers/until.js';

const COUNT = 40;
let tf: TestFleet;
let dir: string;
let a: LocalRedis;
let b: LocalRedis;
beforeAll(async () => {
  // Each reply takes 100 ms: the run is still going when the failover comes.
  tf = await startTestFleet(COUNT, '127.9.0.1', () => ({ slow: { latencyMs: 100 } }));
  dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-failover-'));
  a = await startRedisServer({ dir: path.join(dir, 'a') });
  b = await startRedisServer({ dir: path.join(dir, 'b') });
});
afterAll(async () => {
  await tf.fleet.close();
  await Promise.all([a.stop(), b.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

describe('a Redis failover', () => {
  it('a worker follows the name to the promoted replica (it was refused READONLY by the old primary for ever): the run ends, every miner once', async () => {
    const prefix = uniquePrefix('failover');
    const ra = new Redis(a.url);
    const rb = new Redis(b.url);
    const name = await startRedisName(a.port);
    const worker = await startWorker({ redisUrl: name.url, prefix, threads: 0, concurrency: 4, credentials: tf.credentials, coreOptions: FAST_CORE });
    try {
      await rb.call('REPLICAOF', '127.0.0.1', String(a.port));
      await until(async () => /master_link_status:up/.test(await rb.info('replication')), 15_000);
      const record = await enqueueOnly({ redisUrl: name.url, prefix, inventory: tf.inventory, operation: 'poll', credentials: tf.credentials, threads: 0, concurrency: 4 });
      const onA = new RunStore(ra, prefix);
      await until(async () => (await onA.getCounts(record.runId)).done >= 5, 20_000, 50);
      // A planned failover: b has all of a's writes, then takes over; a follows it; the name moves.
      await ra.call('CLIENT', 'PAUSE', '5000', 'WRITE');
      await until(async () => {
        const offset = (info: string) => /master_repl_offset:(\d+)/.exec(info)?.[1];
        return offset(await ra.info('replication')) === offset(await rb.info('replication'));
      }, 5_000, 20);
      await rb.call('REPLICAOF', 'NO', 'ONE');
      await ra.call('REPLICAOF', '127.0.0.1', String(b.port));
      name.moveTo(b.port);
      await ra.call('CLIENT', 'UNPAUSE');
      const onB = new RunStore(rb, prefix);
      const progress = await Promise.race([
        waitForRun(onB, record.runId, COUNT, { intervalMs: 100 }),
        new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 25_000)),
      ]);
      expect(progress?.done, `stuck at ${(await onB.getCounts(record.runId)).done} of ${COUNT}`).toBe(COUNT);
      expect(progress?.counts).toEqual({ OK: COUNT });
      expect((await onB.outcomeMinerIds(record.runId)).length).toBe(COUNT);
    } finally {
      // As `bos-fleet worker` closes on SIGTERM: its jobs done, a close of BullMQ's that hangs after the
      // failover (taskforcesh/bullmq #4656; once in a loaded full run) is given up after a few seconds.
      const closed = await closeWorker(worker, () => undefined);
      if (closed !== 'closed') console.error(`failover test: the worker's close ended ${closed}`);
      await name.close();
      ra.disconnect();
      rb.disconnect();
    }
  }, 60_000);
});

describe('followFailover', () => {
  it('reconnects on READONLY, sends every command refused in the same failover again, and gives a Redis that stays a replica no reconnect loop', () => {
    vi.useFakeTimers({ now: 1_000_000 });
    try {
      const on = followFailover().reconnectOnError!;
      const readonly = new Error("READONLY You can't write against a read only replica.");
      expect(on(new Error('OOM command not allowed'))).toBe(false);
      expect(on(readonly)).toBe(2);
      vi.advanceTimersByTime(500);
      expect(on(readonly)).toBe(2); // the same failover: sent again, one reconnect
      for (let i = 1; i < FAILOVER_RECONNECTS_PER_MINUTE; i++) {
        vi.advanceTimersByTime(3_000);
        expect(on(readonly)).toBe(2);
      }
      vi.advanceTimersByTime(3_000);
      expect(on(readonly)).toBe(false); // still a replica: refused, said and waited out
      vi.advanceTimersByTime(60_000);
      expect(on(readonly)).toBe(2);
      // Each connection its own: another's failover is not this one's.
      expect(followFailover().reconnectOnError!(readonly)).toBe(2);
    } finally {
      vi.useRealTimers();
    }
  });
});

// A job BullMQ fails for good without our processor running it (it stalled more often than allowed:
// its workers kept dying on it) still gets its miner's one outcome, so the run finishes.
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAME } from '../src/fleet/keys.js';
import { RunStore } from '../src/fleet/run-store.js';
import { enqueueRun } from '../src/producer/enqueue.js';
import { startWorker } from '../src/workers/worker.js';
import { FAST_CORE, type TestFleet, startRedisFleet, type RedisFleet } from './helpers/fleet.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';
import { until } from './helpers/until.js';

let tf: TestFleet;
let redis: Redis;
let rf: RedisFleet;
beforeAll(async () => {
  ({ tf, redis } = rf = await startRedisFleet(1, '127.25.0.1'));
});
afterAll(() => rf.close());

describe('a job that stalled more often than allowed', () => {
  it('gets an INTERNAL outcome saying so, and the run finishes', async () => {
    const prefix = uniquePrefix('stall');
    const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
    const store = new RunStore(redis, prefix);
    const record = await enqueueRun(queue, store, tf.inventory, { operation: 'poll' });
    // A worker that takes the job and dies with it (its lock is never renewed again).
    const dyingConn = redis.duplicate({ maxRetriesPerRequest: null });
    const dying = new Worker(QUEUE_NAME, () => new Promise(() => undefined), { connection: dyingConn, prefix, lockDuration: 500, skipStalledCheck: true });
    await new Promise<void>((r) => dying.once('active', () => r()));
    await dying.close(true);
    dyingConn.disconnect();
    const worker = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 2, credentials: tf.credentials, coreOptions: FAST_CORE, lockDurationMs: 500, stalledIntervalMs: 300, maxStalledCount: 0 });
    try {
      await until(async () => (await store.getCounts(record.runId)).done === 1, 20_000);
      const [o] = await store.getOutcomes(record.runId);
      expect(o).toMatchObject({ minerId: tf.inventory.targets[0]!.minerId, status: 'failed', code: 'INTERNAL' });
      expect(o!.error?.message).toMatch(/^its worker stopped while on this miner more often than allowed .*job stalled more than allowable limit/);
      expect(await store.getCounts(record.runId)).toMatchObject({ done: 1, counts: { INTERNAL: 1 } });
    } finally {
      await worker.close();
      await queue.close();
    }
  }, 30_000);
});

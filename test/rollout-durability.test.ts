// A rollout survives a Redis restart (AOF): it continues where it was, with no double-applies.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rolloutReport, startRollout } from '../src/rollout/create.js';
import { waitForRollout } from '../src/rollout/wait.js';
import { startRedisServer } from '../src/redis/server.js';
import { startWorker } from '../src/workers/worker.js';
import { crashAndRestart } from './helpers/redis.js';
import { FAST_CORE, appliedWritesPerMiner, startTestFleet, type TestFleet } from './helpers/fleet.js';

const COUNT = 60;
let tf: TestFleet;
beforeAll(async () => {
  tf = await startTestFleet(COUNT, '127.18.0.1', () => ({ slow: { latencyMs: 80 } }));
});
afterAll(() => tf.fleet.close());

describe('rollout × Redis restart', () => {
  it('continues where it was after Redis is SIGKILLed and restarted', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-ro-restart-'));
    let server = await startRedisServer({ dir });
    const redis = new Redis(server.url, { maxRetriesPerRequest: null });
    redis.on('error', () => undefined);
    const worker = await startWorker({ redisUrl: server.url, threads: 0, concurrency: 6, credentials: tf.credentials, coreOptions: FAST_CORE });
    try {
      const rec = await startRollout(redis, {
        operation: 'power-target',
        spec: { kind: 'power-target', watts: 2350 },
        targets: tf.inventory.targets,
        inventoryDigest: tf.inventory.digest,
        waves: [0.2, 1],
        maxFailureRate: 0.05,
        minSample: 10,
        pauseBetweenMs: 0,
        actor: 'test',
      });
      await new Promise((r) => setTimeout(r, 1_200)); // the rollout record reaches the AOF
      const deadline = Date.now() + 30_000;
      while (((await rolloutReport(redis, rec.rolloutId))?.counts['OK'] ?? 0) < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      server = await crashAndRestart(server);
      const report = await waitForRollout(redis, rec.rolloutId);
      expect(report.state).toBe('completed');
      expect(report.counts).toEqual({ OK: COUNT });
      const perMiner = await appliedWritesPerMiner(tf.fleet, 'SetPowerTarget');
      expect(perMiner.size).toBe(COUNT);
      expect([...perMiner.values()].every((n) => n === 1)).toBe(true);
    } finally {
      await worker.close();
      redis.disconnect();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});

// A redis-server of a test's own, for tests that kill, freeze or restart it, with a connection and a
// queue on it, and the CLI commands the test starts against it (none outlives the test).
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { QUEUE_NAME } from '../../src/fleet/keys.js';
import { startRedisServer, type LocalRedis } from '../../src/redis/server.js';
import type { spawnCli } from './cli.js';
import { uniquePrefix } from './redis.js';

export interface OwnRedis {
  server: LocalRedis;
  redis: Redis;
  queue: Queue;
  started: ReturnType<typeof spawnCli>[];
  /** Starts it again on the same port and data (after the test killed it). */
  restart: () => Promise<void>;
}

export async function withOwnRedis(name: string, body: (r: OwnRedis) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `bos-fleet-${name}-`));
  const server = await startRedisServer({ dir });
  const redis = new Redis(server.url, { maxRetriesPerRequest: null });
  redis.on('error', () => undefined);
  let current = server;
  const ctx: OwnRedis = {
    server,
    redis,
    queue: new Queue(QUEUE_NAME, { connection: redis, prefix: uniquePrefix(name) }),
    started: [],
    restart: async () => void (current = await startRedisServer({ dir, port: server.port })),
  };
  ctx.queue.on('error', () => undefined);
  try {
    await body(ctx);
  } finally {
    // A failed assertion must not leave a command behind, nor a stopped (SIGSTOPped) redis-server.
    for (const c of ctx.started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    current.process.kill('SIGCONT');
    await ctx.queue.close();
    redis.disconnect();
    await current.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

// Per-test isolation on the shared test Redis: a unique BullMQ prefix and key namespace per test.
import { randomUUID } from 'node:crypto';
import { inject } from 'vitest';
import { startRedisServer, type LocalRedis } from '../../src/redis/server.js';

export function redisUrl(): string {
  return inject('redisUrl');
}

export function uniquePrefix(name = 'test'): string {
  return `t-${name}-${randomUUID().slice(0, 8)}`;
}

/** SIGKILLs a throwaway Redis and starts it again on the same port and data dir (AOF replay). */
export async function crashAndRestart(server: LocalRedis): Promise<LocalRedis> {
  server.process.kill('SIGKILL');
  await new Promise((resolve) => (server.process.exitCode !== null || server.process.signalCode !== null ? resolve(undefined) : server.process.once('exit', resolve)));
  await new Promise((r) => setTimeout(r, 1_000));
  return startRedisServer({ dir: server.dir, port: server.port });
}

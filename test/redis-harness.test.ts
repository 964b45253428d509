import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { startRedisServer } from '../src/redis/server.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';

describe('test Redis', () => {
  it('is a real redis-server with AOF on and noeviction', async () => {
    const r = new Redis(redisUrl());
    const [, aof] = (await r.config('GET', 'appendonly')) as string[];
    const [, policy] = (await r.config('GET', 'maxmemory-policy')) as string[];
    if (!process.env['REDIS_URL']) {
      expect(aof).toBe('yes');
      expect(policy).toBe('noeviction');
    }
    const key = `${uniquePrefix()}:k`;
    await r.set(key, 'v');
    expect(await r.get(key)).toBe('v');
    await r.quit();
  });

  it('a throwaway server keeps its data across a restart (AOF)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-aof-'));
    const first = await startRedisServer({ dir });
    const a = new Redis(first.url);
    await a.set('kept', '1');
    await a.quit();
    await first.stop();
    const second = await startRedisServer({ dir, port: first.port });
    const b = new Redis(second.url);
    expect(await b.get('kept')).toBe('1');
    await b.quit();
    await second.stop();
    rmSync(dir, { recursive: true, force: true });
  });
});

// With neither --redis nor REDIS_URL, bos-fleet runs its own persistent redis-server.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { embeddedRedisUrl, withStartLock } from '../src/redis/resolve.js';
import { startRedisServer } from '../src/redis/server.js';
import { runCli } from './helpers/cli.js';

const home = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-home-'));
/** Embedded Redis servers started under `home`: stopped, and waited for, before `home` is removed. */
const started = new Set<number>();
const remember = (dir: string) => {
  try {
    started.add((JSON.parse(readFileSync(path.join(dir, 'redis', 'embedded.json'), 'utf8')) as { pid: number }).pid);
  } catch {
    // not started
  }
};
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
afterAll(async () => {
  remember(home);
  for (const pid of started) if (alive(pid)) process.kill(pid, 'SIGTERM');
  // A Redis still shutting down writes its log and AOF: remove the directory only once it is gone.
  for (let i = 0; i < 100 && [...started].some(alive); i++) await new Promise((r) => setTimeout(r, 50));
  rmSync(home, { recursive: true, force: true });
});

describe('embedded Redis', () => {
  it('is started once with AOF on, reused by the next command, and explained when missing', async () => {
    const env = { BOS_FLEET_HOME: home, REDIS_URL: '' };
    const first = await runCli(['runs'], env);
    expect(first.code).toBe(0);
    expect(first.stderr).toMatch(/started embedded Redis at redis:\/\/127\.0\.0\.1:\d+/);
    expect(first.stdout).toContain('no runs yet');
    const second = await runCli(['runs'], env);
    expect(second.code).toBe(0);
    expect(second.stderr).toBe(''); // reused, and durable (no warning)

    const missing = await runCli(['runs'], { BOS_FLEET_HOME: path.join(home, 'other'), REDIS_URL: '', PATH: '/nonexistent' });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('apt-get install redis-server');
  });
});

describe('embedded Redis started by commands running together', () => {
  it('is started once: the others wait and use it (no second redis-server on the same data)', async () => {
    const dir = path.join(home, 'together');
    const urls = await Promise.all([1, 2, 3, 4].map(() => embeddedRedisUrl(dir)));
    expect(new Set(urls).size).toBe(1);
    expect(existsSync(path.join(dir, 'redis', 'start.lock'))).toBe(false);
    const info = JSON.parse(readFileSync(path.join(dir, 'redis', 'embedded.json'), 'utf8')) as { pid: number; url: string };
    expect(info.url).toBe(urls[0]);
    started.add(info.pid);
  });

  it('takes over a start lock left by a command that died', async () => {
    const lock = path.join(home, 'dead.lock');
    writeFileSync(lock, '999999999\n'); // no such process
    await expect(withStartLock(lock, async () => 'ran')).resolves.toBe('ran');
    expect(existsSync(lock)).toBe(false);
  });

  it('waits for a live holder, and says who holds the lock when it never lets go', async () => {
    const lock = path.join(home, 'live.lock');
    writeFileSync(lock, `${process.pid}\n`); // this very process: alive
    await expect(withStartLock(lock, async () => 'ran', 300)).rejects.toThrow(`bos-fleet (pid ${process.pid}) has been starting the embedded Redis`);
    rmSync(lock);
  });

  it('a redis-server that exits at once is reported at once, with its reason', async () => {
    const dir = path.join(home, 'busy');
    const first = await startRedisServer({ dir: path.join(home, 'first') });
    const started = Date.now();
    try {
      await expect(startRedisServer({ dir, port: first.port })).rejects.toThrow(/redis-server exited \(code 1\) before answering on redis:\/\/127\.0\.0\.1:\d+: .*(Address already in use|bind)/i);
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      await first.stop();
    }
  });
});

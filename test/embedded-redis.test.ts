// With neither --redis nor REDIS_URL, bos-fleet runs its own persistent redis-server.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { embeddedRedisUrl, withStartLock } from '../src/redis/embedded.js';
import { startRedisServer, waitForRedis } from '../src/redis/server.js';
import { Redis } from 'ioredis';
import { RunStore } from '../src/fleet/run-store.js';
import { exited, expectExit, runCli, spawnCli, startCliFleet } from './helpers/cli.js';
import { until } from './helpers/until.js';

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
    // Its AOF synced before each reply; one started by an older bos-fleet (once a second) is set so by the next command.
    const url = (JSON.parse(readFileSync(path.join(home, 'redis', 'embedded.json'), 'utf8')) as { url: string }).url;
    const admin = new Redis(url);
    try {
      expect(await admin.config('GET', 'appendfsync')).toEqual(['appendfsync', 'always']);
      await admin.config('SET', 'appendfsync', 'everysec');
      const second = await runCli(['runs'], env);
      expect(second.code).toBe(0);
      expect(second.stderr).toBe(''); // reused, and durable (no warning)
      expect(await admin.config('GET', 'appendfsync')).toEqual(['appendfsync', 'always']);
    } finally {
      admin.disconnect();
    }

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

describe('a Redis that is slow to answer', () => {
  it('is waited for while it loads its data (LOADING), however long that takes', async () => {
    const dir = path.join(home, 'loading');
    const first = await startRedisServer({ dir });
    const r = new Redis(first.url);
    for (let i = 0; i < 8; i++) await r.set(`k${i}`, 'v');
    r.disconnect();
    await first.stop();
    // Redis's own test knob: 100 ms per key loaded, so loading these 8 keys takes ~0.8 s.
    const child = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(first.port), '--dir', dir, '--appendonly', 'yes', '--save', '', '--key-load-delay', '100000'], { stdio: 'ignore' });
    try {
      await expect(waitForRedis(first.url, 300, child.pid)).resolves.toBeUndefined();
    } finally {
      child.kill('SIGKILL');
      await exited(child);
    }
  });

  it('one that runs but does not answer (stopped) is named, not doubled by a second redis-server', async () => {
    const dir = path.join(home, 'stopped');
    const url = await embeddedRedisUrl(dir);
    const { pid } = JSON.parse(readFileSync(path.join(dir, 'redis', 'embedded.json'), 'utf8')) as { pid: number };
    started.add(pid);
    process.kill(pid, 'SIGSTOP');
    try {
      await expect(embeddedRedisUrl(dir)).rejects.toThrow(`the embedded Redis (pid ${pid}, ${url}, data in ${path.join(dir, 'redis')}) is running but does not answer`);
      expect((JSON.parse(readFileSync(path.join(dir, 'redis', 'embedded.json'), 'utf8')) as { pid: number }).pid).toBe(pid);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  });
});

describe('embedded Redis gone under a running command', () => {
  it('is started again from its data on the same address, and the poll finishes: one outcome per miner', async () => {
    const count = 40;
    // Slow miners, few at a time: the poll runs for seconds, long enough to lose its Redis part-way.
    const cf = await startCliFleet(count, '127.27.0.1', () => ({ slow: { latencyMs: 150 } }));
    const dir = path.join(home, 'restart');
    const infoFile = path.join(dir, 'redis', 'embedded.json');
    const info = () => JSON.parse(readFileSync(infoFile, 'utf8')) as { pid: number; url: string };
    let client: Redis | undefined;
    let poll: ReturnType<typeof spawnCli> | undefined;
    try {
      poll = spawnCli(['poll', '--inventory', cf.files.inventory, '--credentials', cf.files.credentials, '--concurrency', '4', '--json'], { BOS_FLEET_HOME: dir, REDIS_URL: '' });
      await until(async () => existsSync(infoFile));
      const first = info();
      started.add(first.pid);
      client = new Redis(first.url, { maxRetriesPerRequest: null });
      client.on('error', () => undefined);
      const store = new RunStore(client);
      const done = async () => {
        const [run] = await store.listRuns(1);
        return run ? (await store.getCounts(run.runId)).done : 0;
      };
      await until(async () => (await done()) >= 8);
      process.kill(first.pid, 'SIGKILL');
      // Within the test's time, so that a hang shows the poll's output (it once timed out in a loaded CI run).
      await expectExit(poll, 0, { within: 45_000 });
      const { stdout, stderr } = poll.output();
      expect(stderr).toContain(`bos-fleet: the embedded Redis (pid ${first.pid}) had stopped; started it again from its data in ${path.join(dir, 'redis')} on the same address (${first.url})`);
      expect(stderr).not.toContain('Unhandled error event');
      const second = info();
      started.add(second.pid);
      expect(second.url).toBe(first.url);
      expect(second.pid).not.toBe(first.pid);
      // Every miner has exactly one outcome, those written before the kill included (AOF).
      const result = JSON.parse(stdout) as { runId: string; total: number; counts: Record<string, number> };
      expect(result.total).toBe(count);
      expect(result.counts).toEqual({ OK: count });
      expect((await store.getOutcomes(result.runId)).length).toBe(count);
    } finally {
      if (poll?.exitCode === null) poll.kill('SIGKILL');
      // The Redis the poll started again, stopped after the tests even when this one failed before it was seen.
      remember(dir);
      client?.disconnect();
      await cf.close();
    }
  });
});

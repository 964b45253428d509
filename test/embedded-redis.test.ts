// With neither --redis nor REDIS_URL, bos-fleet runs its own persistent redis-server.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';

const home = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-home-'));
afterAll(() => {
  try {
    const info = JSON.parse(readFileSync(path.join(home, 'redis', 'embedded.json'), 'utf8')) as { pid: number };
    process.kill(info.pid, 'SIGTERM');
  } catch {
    // not started
  }
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

// A Redis user restricted by ACL: a command it may not run is named with the grant that fixes it,
// before anything starts — BullMQ without INFO spun a core forever and never handled SIGTERM.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkDurability } from '../src/redis/durability.js';
import { serverProblem } from '../src/redis/permissions.js';
import { startRedisServer } from '../src/redis/server.js';
import { exited, runCli, spawnCli, writeFleetFiles, type FleetFiles } from './helpers/cli.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';
import { until } from './helpers/until.js';

let admin: Redis;
let files: FleetFiles;
const users: string[] = [];
/** A user with `rules`, and a --redis URL that logs in as it. */
async function user(...rules: string[]): Promise<{ name: string; url: string }> {
  const name = `acl-${randomUUID().slice(0, 8)}`;
  users.push(name);
  await admin.call('ACL', 'SETUSER', name, 'on', '>pw', ...rules);
  const url = new URL(redisUrl());
  url.username = name;
  url.password = 'pw';
  return { name, url: url.toString() };
}

beforeAll(async () => {
  admin = new Redis(redisUrl(), { maxRetriesPerRequest: null });
  files = writeFleetFiles('id,host\nm1,127.38.1.1\n');
});
afterAll(async () => {
  for (const name of users) await admin.call('ACL', 'DELUSER', name);
  admin.disconnect();
  rmSync(files.dir, { recursive: true, force: true });
});

describe('a Redis user restricted by ACL', () => {
  const poll = (url: string) => runCli(['poll', '--inventory', files.inventory, '--credentials', files.credentials, '--redis', url], {}, 20_000);

  it('without INFO or Lua scripts: refused at start, naming the command and the grant', async () => {
    const noInfo = await user('~*', '&*', '+@all', '-info');
    const r = await poll(noInfo.url);
    expect(r.code).toBe(1); // not SIGKILLed at the timeout: it spun for ever before
    expect(r.stderr).toContain(`bos-fleet: the Redis user "${noInfo.name}" may not run INFO (BullMQ reads the server version with it on every connection): NOPERM`);
    expect(r.stderr).toContain(`Grant it (ACL SETUSER ${noInfo.name} +info) or use a user that has it`);
    const noScripts = await user('~*', '&*', '+@all', '-@scripting');
    const s = await poll(noScripts.url);
    expect(s.code).toBe(1);
    expect(s.stderr).toContain(`bos-fleet: the Redis user "${noScripts.name}" may not run Lua scripts (every queue operation is one): NOPERM`);
    expect(s.stderr).toContain(`(ACL SETUSER ${noScripts.name} +@scripting)`);
  });

  it("without bos-fleet's keys: the refusal says which grant it needs", async () => {
    const elsewhere = await user('~other:*', '&*', '+@all');
    const r = await poll(elsewhere.url);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^bos-fleet: NOPERM .* — Redis refused the command\. The Redis user \(ACL\) may not do this: let it run every command on bos-fleet's keys \(ACL SETUSER USER ~\{bosfleet\}:\* \+@all, with the --prefix used\), or use another user\.$/m);
  });
});

describe('a Redis that refuses CONFIG (as managed Redis services do)', () => {
  it('has its persistence and eviction read from INFO: a durable one runs a worker; a volatile one is still refused', async () => {
    const noConfig = await user('~*', '&*', '+@all', '-config');
    const worker = spawnCli(['worker', '--redis', noConfig.url, '--credentials', files.credentials, '--prefix', uniquePrefix('noconfig')]);
    try {
      await until(async () => /^worker: \d+ on redis:/m.test(worker.output().stdout + worker.output().stderr) || worker.exitCode !== null, 20_000, 50);
      expect(worker.exitCode, worker.output().stderr).toBeNull();
      expect(worker.output().stderr).not.toContain('could not read Redis settings');
    } finally {
      worker.kill('SIGTERM');
      await exited(worker);
    }
    const refused = { config: async () => Promise.reject(new Error('NOPERM this user has no permissions to run the \'config|get\' command')) } as unknown as Redis;
    const volatile = await checkDurability(refused, new Map([['aof_enabled', '0'], ['maxmemory_policy', 'allkeys-lru']]));
    expect(volatile.problems).toEqual([
      'Redis has appendonly no: a Redis restart loses every queued job and outcome (set appendonly yes)',
      'Redis has maxmemory-policy allkeys-lru: it may evict jobs under memory pressure (set noeviction)',
    ]);
    expect((await checkDurability(refused, new Map([['aof_enabled', '1'], ['maxmemory_policy', 'noeviction']]))).problems).toEqual([]);
    expect((await checkDurability(refused)).problems).toEqual(['could not read Redis settings (CONFIG GET and INFO refused): make sure it runs with appendonly yes and maxmemory-policy noeviction']);
  });
});

describe('a Redis that syncs its AOF once a second', () => {
  it('runs a worker, which says what a power failure would cost and how to avoid it; one that syncs before each reply says nothing', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-everysec-'));
    const server = await startRedisServer({ dir, appendfsync: 'everysec' });
    const direct = new Redis(server.url);
    try {
      const start = async () => {
        const worker = spawnCli(['worker', '--redis', server.url, '--credentials', files.credentials]);
        try {
          await until(async () => /^worker: \d+ on redis:/m.test(worker.output().stdout + worker.output().stderr) || worker.exitCode !== null, 20_000, 50);
          expect(worker.exitCode, worker.output().stderr).toBeNull();
          return worker.output().stderr;
        } finally {
          worker.kill('SIGTERM');
          await exited(worker);
        }
      };
      expect(await start()).toContain('bos-fleet: note: Redis has appendfsync everysec: a power failure of its host can lose its last second or so of writes');
      expect((await checkDurability(direct)).powerLossNote).toMatch(/appendfsync always avoids that/);
      await direct.config('SET', 'appendfsync', 'always');
      expect((await checkDurability(direct)).powerLossNote).toBeUndefined();
      expect(await start()).not.toContain('appendfsync');
    } finally {
      direct.disconnect();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a Redis older than BullMQ's minimum", () => {
  it('is refused (below 5.0.0: BullMQ would fail every connection), warned of below 6.2, and passed from 6.2 on', () => {
    const info = (version: string) => `# Server\r\nredis_version:${version}\r\nredis_mode:standalone\r\n`;
    expect(serverProblem(info('4.0.9')).fatal).toBe("Redis 4.0.9 is too old: bos-fleet's queue (BullMQ) needs Redis 5.0.0 or later (tested on 7.0): upgrade it, or point --redis / REDIS_URL at a newer one");
    expect(serverProblem(info('5.0.7'))).toEqual({ warning: 'Redis 5.0.7 is older than 6.2, which BullMQ recommends (bos-fleet is tested on 7.0)' });
    expect(serverProblem(info('6.0.16')).warning).toMatch(/^Redis 6\.0\.16 is older than 6\.2/);
    for (const ok of ['6.2.0', '6.10.1', '7.0.15', '10.0.0']) expect(serverProblem(info(ok))).toEqual({});
    // Redis-compatible servers report their own version: BullMQ judges those itself.
    expect(serverProblem(`${info('7.2.4')}valkey_version:8.0.1\r\n`)).toEqual({});
    expect(serverProblem('# Server\r\n')).toEqual({});
    // A cluster's keys live on several nodes; bos-fleet keeps its queue on one Redis.
    expect(serverProblem(`${info('7.0.15')}redis_mode:cluster\r\n`).fatal).toMatch(/^this Redis runs in cluster mode, which bos-fleet does not use/);
  });
});

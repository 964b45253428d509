// The bos-fleet command line as an operator runs it: poll --json, results, runs, bad input.
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inventoryCsv } from '../src/sim/plan.js';
import { RunStore } from '../src/fleet/run-store.js';
import type { Outcome } from '../src/fleet/outcome.js';
import { CLI, exited, expectExit, runCli, spawnCli, writeFleetFiles } from './helpers/cli.js';
import { makeTestCerts } from './helpers/certs.js';
import { until } from './helpers/until.js';
import { startTestFleet, type TestFleet } from './helpers/fleet.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';

let tf: TestFleet;
let files: ReturnType<typeof writeFleetFiles>;
beforeAll(async () => {
  tf = await startTestFleet(12, '127.12.0.1', (i) => (i === 3 ? { refuse: true } : i === 5 ? { oldApi: true } : {}));
  files = writeFleetFiles(inventoryCsv(tf.fleet.miners.map((m, index) => ({ ...m, index }))));
});
afterAll(async () => {
  await tf.fleet.close();
  rmSync(files.dir, { recursive: true, force: true });
});

describe('bos-fleet poll', () => {
  it('--json prints {runId, total, counts, durationMs}; results and runs read it back', async () => {
    const prefix = uniquePrefix('cli');
    const base = ['--redis', redisUrl(), '--prefix', prefix];
    const r = await runCli(['poll', '--inventory', files.inventory, '--credentials', files.credentials, '--timeout-ms', '800', '--json', ...base]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { runId: string; total: number; counts: Record<string, number>; durationMs: number };
    expect(Object.keys(out).sort()).toEqual(['counts', 'durationMs', 'runId', 'total']);
    expect(out).toMatchObject({ total: 12, counts: { OK: 11, MINER_UNREACHABLE: 1 } });

    const json = await runCli(['results', out.runId, '--format', 'json', ...base]);
    const outcomes = JSON.parse(json.stdout) as Outcome[];
    expect(outcomes.length).toBe(12);
    expect(Object.keys(outcomes[0]!).sort()).toEqual(['attempts', 'code', 'data', 'durationMs', 'finishedAt', 'host', 'jobAttempts', 'minerId', 'operation', 'port', 'runId', 'status', 'transport']);
    // `results` reads in batches (HKEYS, then HMGET per batch), in miner-id order.
    const redis = new Redis(redisUrl());
    const batches: string[][] = [];
    for await (const b of new RunStore(redis, prefix).outcomeBatches(out.runId, 5)) batches.push(b.map((o) => o.minerId));
    redis.disconnect();
    expect(batches.map((b) => b.length)).toEqual([5, 5, 2]);
    expect(batches.flat()).toEqual(outcomes.map((o) => o.minerId));
    expect(batches.flat()).toEqual([...batches.flat()].sort());
    const failed = await runCli(['results', out.runId, '--failed', '--format', 'csv', ...base]);
    const lines = failed.stdout.trim().split('\n');
    expect(lines.length).toBe(2);
    expect(lines[1]).toContain('MINER_UNREACHABLE');
    // The whole CSV carries each poll's data, the values the JSON has.
    const csv = (await runCli(['results', out.runId, '--format', 'csv', ...base])).stdout.trim().split('\n');
    const header = csv[0]!.split(',');
    const ok = outcomes.find((o) => o.code === 'OK')!;
    const okRow = csv.find((l) => l.startsWith(`${out.runId},${ok.minerId},`))!.split(',');
    const cell = (name: string) => okRow[header.indexOf(name)];
    const snapshot = ok.data as { model: string; hashrate: { realGhs5m: number } };
    expect(cell('model')).toBe(snapshot.model);
    expect(cell('hashrate.realGhs5m')).toBe(String(snapshot.hashrate.realGhs5m));
    const table = await runCli(['results', out.runId, ...base]);
    expect(table.stdout).toMatch(/MINER_UNREACHABLE .*Nothing answers/);
    // Columns line up: in the miners' table and in the summary's, each code starts under CODE.
    for (const block of table.stdout.split('\n\n').filter((b) => b.includes('CODE'))) {
      const lines = block.split('\n').filter((l) => /\b(CODE|OK|MINER_UNREACHABLE)\b/.test(l));
      expect(lines.length).toBeGreaterThan(1);
      expect(new Set(lines.map((l) => l.search(/\b(CODE|OK|MINER_UNREACHABLE)\b/))).size).toBe(1);
    }

    const runs = await runCli(['runs', '--json', ...base]);
    expect(JSON.parse(runs.stdout)).toMatchObject([{ runId: out.runId, operation: 'poll', total: 12, done: 12 }]);
  });

  it('a bad inventory is rejected whole with file, line, field and value; nothing is enqueued', async () => {
    const prefix = uniquePrefix('bad');
    const bad = path.join(files.dir, 'bad.csv');
    writeFileSync(bad, 'id,host\nm1,127.12.0.1\nm2,not a host\n');
    const r = await runCli(['poll', '--inventory', bad, '--credentials', files.credentials, '--redis', redisUrl(), '--prefix', prefix]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`inventory ${bad} rejected`);
    expect(r.stderr).toContain('line 3: field host: "not a host" is not an IP address or hostname');
    const redis = new Redis(redisUrl());
    expect(await redis.keys(`${prefix}*`)).toEqual([]);
    redis.disconnect();
  });

  it('an unknown credentials profile is named, with the miners that use it, before anything is enqueued', async () => {
    const inv = path.join(files.dir, 'profiles.csv');
    writeFileSync(inv, 'id,host,credentials\nm1,127.12.0.1,site-b\nm2,127.12.0.2,site-b\nm3,127.12.0.3,site-c\nm4,127.12.0.4,site-b\nm5,127.12.0.5,site-b\nm6,127.12.0.6,default\n');
    const r = await runCli(['poll', '--inventory', inv, '--redis', redisUrl(), '--prefix', uniquePrefix('prof')], { BOS_FLEET_USERNAME: '' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`inventory ${inv}: credentials profiles "site-b" (miners m1, m2, m4 and 1 more), "site-c" (miner m3), "default" (miner m6) not found: pass --credentials FILE`);
    // In the file given, one missing profile: "add it" there, with the shape to add.
    const one = await runCli(['poll', '--inventory', inv, '--credentials', files.credentials, '--redis', redisUrl(), '--prefix', uniquePrefix('prof')]);
    expect(one.code).toBe(1);
    expect(one.stderr).toContain(`credentials profiles "site-b" (miners m1, m2, m4 and 1 more), "site-c" (miner m3) not found: add them to ${files.credentials} ({"profile": {"username": "...", "password": "..."}})`);
  });

  it('--enqueue-only needs no passwords here (the workers hold them) and leaves the jobs queued', async () => {
    const prefix = uniquePrefix('enq');
    const noCreds = { BOS_FLEET_USERNAME: '', BOS_FLEET_PASSWORD: '' };
    const r = await runCli(['poll', '--inventory', files.inventory, '--enqueue-only', '--json', '--redis', redisUrl(), '--prefix', prefix], noCreds);
    // No worker runs on this prefix yet: said, not an error.
    expect(r.stderr).toBe('bos-fleet: WARNING: no `bos-fleet worker` is running on this Redis and prefix: the jobs wait until one starts\n');
    expect(r.code).toBe(0);
    const { runId, total } = JSON.parse(r.stdout) as { runId: string; total: number };
    expect(total).toBe(12);
    const runs = await runCli(['runs', '--json', '--redis', redisUrl(), '--prefix', prefix]);
    expect(JSON.parse(runs.stdout)).toMatchObject([{ runId, total: 12, done: 0 }]);
    const redis = new Redis(redisUrl());
    // Queued for separate workers, behind foreground runs and rollouts (BullMQ priority).
    expect(await redis.zcard(`${prefix}:jobs:prioritized`)).toBe(12);
    redis.disconnect();
  });

  it('--keep-runs 1: a new poll deletes the finished ones before it', async () => {
    const two = path.join(files.dir, 'two.csv');
    writeFileSync(two, inventoryCsv(tf.fleet.miners.slice(0, 2).map((m, index) => ({ ...m, index }))));
    const base = ['--inventory', two, '--credentials', files.credentials, '--timeout-ms', '800', '--json', '--redis', redisUrl(), '--prefix', uniquePrefix('keep')];
    const first = JSON.parse((await runCli(['poll', ...base])).stdout) as { runId: string };
    const second = await runCli(['poll', ...base, '--keep-runs', '1']);
    expect(second.code).toBe(0);
    const { runId } = JSON.parse(second.stdout) as { runId: string };
    const runs = JSON.parse((await runCli(['runs', '--json', ...base.slice(-4)])).stdout) as { runId: string }[];
    expect(runs.map((r) => r.runId)).toEqual([runId]);
    expect((await runCli(['results', first.runId, ...base.slice(-4)])).stderr).toContain(`no run "${first.runId}"`);
  });

  it('bad options name the option and the value', async () => {
    const r = await runCli(['poll', '--inventory', files.inventory, '--threads', '-1']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('--threads must be a whole number from 0 to 256, got "-1"');
    const w = await runCli(['worker', '--max-connections', '0']);
    expect(w.code).not.toBe(0);
    expect(w.stderr).toContain('--max-connections must be a positive integer, got "0"');
    const c = await runCli(['worker', '--consumers', 'two']);
    expect(c.code).not.toBe(0);
    expect(c.stderr).toContain('--consumers must be a whole number from 1 to 1000, got "two"');
    const m = await runCli(['worker', '--max-receive-bytes', '8388608']);
    expect(m.code).not.toBe(0);
    expect(m.stderr).toContain('--max-receive-bytes must be a whole number from 1024 to 4194304, got "8388608"');
    const down = await runCli(['runs', '--redis', 'redis://127.0.0.1:1']);
    expect(down.code).toBe(1);
    // Only that: not also the advice for a connection that closed under a command under way.
    expect(down.stderr).toBe('bos-fleet: cannot connect to Redis at redis://127.0.0.1:1: connect ECONNREFUSED 127.0.0.1:1 (check --redis, and that redis-server runs there)\n');
    const keep = await runCli(['poll', '--inventory', files.inventory, '--keep-for', 'a week']);
    expect(keep.code).toBe(1);
    expect(keep.stderr).toContain('--keep-for must be a duration like 24h or 7d, got "a week"');
    // A bare number would be seconds: every finished run older than 7 s deleted.
    const bare = await runCli(['schedule', 'add', 'poll', '--inventory', files.inventory, '--every', '1h', '--keep-for', '7']);
    expect(bare.code).toBe(1);
    expect(bare.stderr).toContain('--keep-for needs a unit, like 24h or 7d, got "7"');
    expect((await runCli(['poll', '--inventory', files.inventory, '--keep-for', '30s'])).stderr).toContain('--keep-for must be at least 1m');
    const tlsFile = path.join(files.dir, 'tls.json');
    // A relative path is relative to the --tls file, not to the command's working directory.
    writeFileSync(tlsFile, JSON.stringify({ 'site-a': { caFile: 'missing-ca.pem' } }));
    const t = await runCli(['worker', '--tls', tlsFile, '--redis', redisUrl()]);
    expect(t.code).toBe(1);
    expect(t.stderr).toContain(`--tls ${tlsFile}: site "site-a": tls.caFile: cannot read "${path.join(files.dir, 'missing-ca.pem')}": no such file`);
    const e = await runCli(['poll', '--inventory', files.inventory, '--enqueue-only', '--max-receive-bytes', '1048576', '--redis', redisUrl()]);
    expect(e.code).toBe(1);
    expect(e.stderr).toContain('with --enqueue-only, pass it to `bos-fleet worker`');
  });
});

describe('bin/bos-fleet.js', () => {
  it('in a checkout not built yet says to run npm run build, with no stack trace', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-unbuilt-'));
    try {
      mkdirSync(path.join(dir, 'bin'));
      copyFileSync(CLI, path.join(dir, 'bin', 'bos-fleet.js'));
      const child = spawn(process.execPath, [path.join(dir, 'bin', 'bos-fleet.js'), 'runs'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      expect(await exited(child), stderr).toBe(1);
      expect(stderr).toBe(`bos-fleet: ${path.join(dir, 'dist', 'cli', 'bos-fleet.mjs')} is missing: run \`npm run build\` in ${dir}/\n`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a miner whose replies exceed the receive limit', () => {
  let big: TestFleet;
  let bigFiles: ReturnType<typeof writeFleetFiles>;
  beforeAll(async () => {
    big = await startTestFleet(2, '127.12.1.1', (i) => (i === 0 ? { oversized: { bytes: 1024 * 1024 } } : {}));
    bigFiles = writeFleetFiles(inventoryCsv(big.fleet.miners.map((m, index) => ({ ...m, index }))));
  });
  afterAll(async () => {
    await big.fleet.close();
    rmSync(bigFiles.dir, { recursive: true, force: true });
  });

  it('fails RESPONSE_TOO_LARGE with a suggestion the operator can follow, and --max-receive-bytes lets it through', async () => {
    const prefix = uniquePrefix('big');
    const base = ['--inventory', bigFiles.inventory, '--credentials', bigFiles.credentials, '--timeout-ms', '2000', '--redis', redisUrl(), '--prefix', prefix];
    const r = await runCli(['poll', ...base]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/RESPONSE_TOO_LARGE +1 .*raise --max-receive-bytes of `bos-fleet poll` \/ `bos-fleet worker`/);
    // The command it names reaches the same Redis and prefix.
    expect(r.stdout).toMatch(new RegExp(`details: bos-fleet results run-\\S+ --redis ${redisUrl()} --prefix '${prefix}' \\[--failed\\]`));
    const raised = await runCli(['poll', ...base, '--max-receive-bytes', String(2 * 1024 * 1024), '--json']);
    expect(raised.code).toBe(0);
    expect(JSON.parse(raised.stdout)).toMatchObject({ total: 2, counts: { OK: 2 } });
  });

  it('a `bos-fleet worker` counts a miner whose failure is final (not retried) as its outcome, not as an attempt to run again', async () => {
    // In the bundled CLI BullMQ's UnrecoverableError is named otherwise (esbuild renames the class):
    // a check by name alone counted every non-retryable failure as a retry in the worker's log.
    const prefix = uniquePrefix('final');
    const e = await runCli(['poll', '--inventory', bigFiles.inventory, '--enqueue-only', '--json', '--redis', redisUrl(), '--prefix', prefix]);
    expect(e.code).toBe(0);
    const { runId } = JSON.parse(e.stdout) as { runId: string };
    const worker = spawnCli(['worker', '--credentials', bigFiles.credentials, '--report-every', '0', '--redis', redisUrl(), '--prefix', prefix]);
    const redis = new Redis(redisUrl());
    try {
      await until(async () => (await new RunStore(redis, prefix).getCounts(runId)).done === 2);
    } finally {
      redis.disconnect();
      worker.kill('SIGTERM');
    }
    await expectExit(worker, 0);
    expect(worker.output().stdout).toContain('worker: stopped after 2 outcomes (OK 1, RESPONSE_TOO_LARGE 1)\n');
  });
});

describe('a simulated farm whose addresses are taken', () => {
  it('sim and demo say which address and what to do; the demo leaves no Redis nor files behind', async () => {
    const taken = await startTestFleet(2, '127.42.0.1');
    const demoDirs = () => readdirSync(os.tmpdir()).filter((d) => d.startsWith('bos-fleet-demo-'));
    const demoRedis = () =>
      readdirSync('/proc')
        .filter((p) => /^\d+$/.test(p))
        .filter((p) => {
          try {
            return readFileSync(`/proc/${p}/cmdline`, 'utf8').startsWith('redis-server') && readlinkSync(`/proc/${p}/cwd`).includes('bos-fleet-demo-');
          } catch {
            return false;
          }
        });
    try {
      const dirsBefore = demoDirs();
      const redisBefore = demoRedis();
      const demo = await runCli(['demo', '--miners', '5', '--base', '127.42.0.1']);
      expect(demo.code).toBe(1);
      expect(demo.stderr).toContain('sim: 127.42.0.1:50051 is already in use (another `bos-fleet sim` or demo on these addresses?): pass --base with another loopback range');
      expect(demoDirs()).toEqual(dirsBefore);
      expect(demoRedis()).toEqual(redisBefore);
      const sim = await runCli(['sim', '--miners', '3', '--base', '127.42.0.2']);
      expect(sim.code).toBe(1);
      expect(sim.stderr).toContain('sim: 127.42.0.2:50051 is already in use');
    } finally {
      await taken.fleet.close();
    }
  });
});

describe('bos-fleet sim --tls-cert / --tls-key / --tls-client-ca', () => {
  it('refuses a half or unreadable TLS setting before binding, naming the option and the file', async () => {
    const certs = makeTestCerts('127.44.0.1');
    const key = path.join(certs.dir, 'miner.key');
    const cert = path.join(certs.dir, 'miner.pem');
    try {
      const sim = (...tls: string[]) => runCli(['sim', '--miners', '1', '--base', '127.44.0.1', ...tls]);
      const half = await sim('--tls-cert', cert);
      expect([half.code, half.stderr.trim()]).toEqual([1, `bos-fleet: sim: --tls-cert and --tls-key go together (got --tls-cert "${cert}" alone)`]);
      const missing = await sim('--tls-cert', '/nonexistent/miner.pem', '--tls-key', key);
      expect([missing.code, missing.stderr.trim()]).toEqual([1, 'bos-fleet: sim: --tls-cert "/nonexistent/miner.pem": no such file']);
      const mismatched = await sim('--tls-cert', cert, '--tls-key', certs.clientKeyFile);
      expect(mismatched.code).toBe(1);
      expect(mismatched.stderr).toContain(`sim: --tls-key "${certs.clientKeyFile}" does not go with --tls-cert "${cert}"`);
      const caAlone = await sim('--tls-client-ca', certs.caFile);
      expect(caAlone.stderr.trim()).toBe(`bos-fleet: sim: --tls-client-ca "${certs.caFile}" needs --tls-cert and --tls-key (mTLS is TLS with client certificates)`);
    } finally {
      rmSync(certs.dir, { recursive: true, force: true });
    }
  });

  it('serves mTLS that `poll --tls` reaches (every outcome says tls)', async () => {
    const certs = makeTestCerts('127.44.0.2');
    const inventory = path.join(certs.dir, 'farm.csv');
    const tlsFile = path.join(certs.dir, 'tls.json');
    writeFileSync(tlsFile, JSON.stringify({ '*': { caFile: 'farm-ca.pem', certFile: 'client.pem', keyFile: 'client.key', serverName: 'miner.farm.local' } }));
    const sim = spawnCli(['sim', '--miners', '2', '--base', '127.44.0.2', '--inventory-out', inventory, '--credentials-out', path.join(certs.dir, 'creds.json'),
      '--tls-cert', path.join(certs.dir, 'miner.pem'), '--tls-key', path.join(certs.dir, 'miner.key'), '--tls-client-ca', certs.caFile]);
    try {
      await until(async () => sim.output().stdout.includes('Ctrl-C to stop') || sim.exitCode !== null, 20_000);
      expect(sim.output().stdout).toContain('sim: 2 miners on 127.44.0.2…127.44.0.3:50051');
      expect(sim.output().stdout).toContain(', TLS with client certificates (mTLS)');
      const base = ['--redis', redisUrl(), '--prefix', uniquePrefix('sim-tls'), '--inventory', inventory, '--credentials', path.join(certs.dir, 'creds.json')];
      const polled = await runCli(['poll', ...base, '--tls', tlsFile, '--json']);
      const out = JSON.parse(polled.stdout) as { runId: string; counts: Record<string, number> };
      expect(out.counts).toEqual({ OK: 2 });
      const outcomes = JSON.parse((await runCli(['results', out.runId, '--format', 'json', ...base.slice(0, 4)])).stdout) as Outcome[];
      expect(outcomes.map((o) => o.transport)).toEqual(['tls', 'tls']);
    } finally {
      sim.kill('SIGTERM');
      await exited(sim);
      rmSync(certs.dir, { recursive: true, force: true });
    }
  });
});

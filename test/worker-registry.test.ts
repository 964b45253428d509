// Workers with different configurations on one queue: a worker handed a job it cannot do (no password
// for the miner's profile, no TLS material for a site the run asked TLS for) hands it on to the workers
// that can (hand-on.test.ts); when none can, the miner's outcome says what is missing — never a
// plaintext connection.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QUEUE_NAME } from '../src/fleet/keys.js';
import { RunStore } from '../src/fleet/run-store.js';
import type { CredentialProfile } from '../src/fleet/credentials.js';
import { enqueueRun } from '../src/producer/enqueue.js';
import { parseInventory, type Inventory } from '../src/producer/inventory.js';
import { waitForRun } from '../src/producer/wait.js';
import { SIM_PASSWORD, SIM_USERNAME } from '../src/sim/miner.js';
import { startWorker, type RunningWorker } from '../src/workers/worker.js';
import { WorkerRegistry, workersWarning } from '../src/workers/registry.js';
import { createTaskRunner } from '../src/workers/task.js';
import { redisClockOffsetMs } from '../src/redis/clock.js';
import { createSharedBreakerTable } from '../src/core/breaker-table.js';
import { makeTestCerts } from './helpers/certs.js';
import { runCli } from './helpers/cli.js';
import { FAST_CORE, startTestFleet, type TestFleet } from './helpers/fleet.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';

const COUNT = 16;
const simCreds = { username: SIM_USERNAME, password: SIM_PASSWORD };
let tf: TestFleet;
let redis: Redis;
/** The fleet's inventory with every odd miner on profile "site2". */
let inventory: Inventory;
let csv: string;

beforeAll(async () => {
  tf = await startTestFleet(COUNT, '127.21.0.1');
  redis = new Redis(redisUrl());
  csv = ['id,host,port,site,tags,credentials', ...tf.fleet.miners.map((m, i) => `${m.id},${m.host},${m.port},${i % 2 ? 'site-b' : 'site-a'},,${i % 2 ? 'site2' : 'default'}`)].join('\n');
  inventory = parseInventory(csv, 'two-profiles.csv');
});
afterAll(async () => {
  redis.disconnect();
  await tf.fleet.close();
});

async function run(prefix: string, workers: RunningWorker[], opts: { tlsSites?: string[]; operation?: 'poll' | 'pools'; params?: Record<string, unknown> } = {}) {
  const queue = new Queue(QUEUE_NAME, { connection: redis, prefix });
  const store = new RunStore(redis, prefix);
  try {
    const record = await enqueueRun(queue, store, inventory, { operation: 'poll', jobAttempts: 1, ...opts });
    await waitForRun(store, record.runId, record.total, { intervalMs: 50 });
    return new Map((await store.getOutcomes(record.runId)).map((o) => [o.minerId, o] as const));
  } finally {
    await Promise.all(workers.map((w) => w.close()));
    await queue.close();
  }
}

const worker = (prefix: string, profiles: Record<string, CredentialProfile>, extra: Partial<Parameters<typeof startWorker>[0]> = {}) =>
  startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 4, credentials: new Map(Object.entries(profiles)), coreOptions: FAST_CORE, ...extra });

describe('a job this worker cannot do', () => {
  it('goes to a live worker that has the profile: every miner is polled, none fails for a missing password', async () => {
    const prefix = uniquePrefix('reg');
    // The first worker knows only "default"; both take jobs from the start.
    const plain = await worker(prefix, { default: simCreds });
    const full = await worker(prefix, { default: simCreds, site2: simCreds });
    const outcomes = await run(prefix, [plain, full]);
    expect(outcomes.size).toBe(COUNT);
    expect([...outcomes.values()].filter((o) => o.code !== 'OK').map((o) => `${o.minerId} ${o.code} ${o.error?.message}`)).toEqual([]);
  });

  it('when no live worker has the profile, the outcome names it (and nothing reaches the miner)', async () => {
    const prefix = uniquePrefix('reg');
    const outcomes = await run(prefix, [await worker(prefix, { default: simCreds })]);
    const m1 = tf.fleet.miners[1]!;
    expect(outcomes.get(m1.id)).toMatchObject({ code: 'INVALID_JOB', jobAttempts: 1 });
    expect(outcomes.get(m1.id)?.error?.message).toMatch(/no running worker has credentials profile "site2"/);
    expect(outcomes.get(tf.fleet.miners[0]!.id)?.code).toBe('OK');
  });

  it('a run that asked for TLS is never polled in plaintext by a worker without TLS for the site', async () => {
    const prefix = uniquePrefix('reg');
    const both = { default: simCreds, site2: simCreds };
    const before = await tf.fleet.callCounts(tf.fleet.miners[0]!.id);
    // TLS asked for site-a only; this worker has none.
    const alone = await run(prefix, [await worker(prefix, both)], { tlsSites: ['site-a'] });
    const a = alone.get(tf.fleet.miners[0]!.id);
    expect(a).toMatchObject({ code: 'INVALID_JOB' });
    expect(a?.error?.message).toMatch(/no running worker has TLS for site "site-a"/);
    expect(alone.get(tf.fleet.miners[1]!.id)?.code).toBe('OK'); // site-b: plaintext as asked
    expect(await tf.fleet.callCounts(tf.fleet.miners[0]!.id)).toEqual(before);

    // With a worker that has TLS for the site, it takes those jobs: the simulator speaks plaintext,
    // so its TLS handshake fails (TLS_ERROR) — and still no request reached the miner in plaintext.
    const certs = makeTestCerts('127.21.0.1');
    try {
      const prefix2 = uniquePrefix('reg');
      const noTls = await worker(prefix2, both);
      const tls = await worker(prefix2, both, { tlsBySite: { 'site-a': { caFile: certs.caFile } } });
      const mixed = await run(prefix2, [noTls, tls], { tlsSites: ['site-a'] });
      expect(mixed.get(tf.fleet.miners[0]!.id)).toMatchObject({ code: 'TLS_ERROR', transport: 'tls' });
      expect(await tf.fleet.callCounts(tf.fleet.miners[0]!.id)).toEqual(before);
    } finally {
      rmSync(certs.dir, { recursive: true, force: true });
    }
  });
});

describe('a pools change whose pool password profile this worker lacks', () => {
  const pools = { kind: 'pools', groups: [{ name: 'Main', pools: [{ url: 'stratum+tcp://pool.example:3333', user: 'farm.{minerId}', passwordRef: 'pool-main' }] }] };
  const both = { default: simCreds, site2: simCreds };
  const writes = async () => (await Promise.all(tf.fleet.miners.map((m) => tf.fleet.callCounts(m.id)))).reduce((n, c) => n + (c['SetPoolGroups'] ?? 0), 0);

  it('goes to a live worker that has it: every miner is changed once, none refused for the password', async () => {
    const prefix = uniquePrefix('reg');
    const before = await writes();
    // Both take jobs from the start; only the second can resolve the pool password.
    const lacking = await worker(prefix, both);
    // The pool password's profile has no username: a pool password only.
    const able = await worker(prefix, { ...both, 'pool-main': { password: 'pool-secret' } });
    const outcomes = await run(prefix, [lacking, able], { operation: 'pools', params: { mutation: pools } });
    expect([...outcomes.values()].filter((o) => o.code !== 'OK').map((o) => `${o.minerId} ${o.code} ${o.error?.message}`)).toEqual([]);
    expect(await writes()).toBe(before + COUNT);
    expect((await tf.fleet.state(tf.fleet.miners[0]!.id)).poolGroups[0]?.pools[0]).toMatchObject({ user: `farm.${tf.fleet.miners[0]!.id}`, password: 'pool-secret' });
  });

  it('when no live worker has it, the outcome names the pool password profile and nothing is written', async () => {
    const prefix = uniquePrefix('reg');
    const before = await writes();
    const outcomes = await run(prefix, [await worker(prefix, both)], { operation: 'pools', params: { mutation: pools } });
    expect(outcomes.size).toBe(COUNT);
    for (const o of outcomes.values()) {
      expect(o).toMatchObject({ code: 'INVALID_JOB', jobAttempts: 1 });
      expect(o.error?.message).toMatch(/^no running worker has credentials profile "pool-main" \(a pool password\)/);
    }
    expect(await writes()).toBe(before);
  });

  it('is said when the change is left to running workers that lack it', () => {
    const w = { id: 'w', host: 'h', pid: 1, startedAt: '', concurrency: 1, threads: 0, profiles: ['default'], tlsSites: [] };
    const targets = inventory.targets.filter((t) => t.credentials === 'default');
    expect(workersWarning([w], targets, [], 'the rollout waits', { mutation: pools })).toBe(
      `no running worker (1) has what some miners need, so they will end INVALID_JOB unless a worker that has it starts: ${COUNT / 2} miners need credentials profile "pool-main" (a pool password)`,
    );
    expect(workersWarning([{ ...w, profiles: ['default', 'pool-main'] }], targets, [], 'the rollout waits', { mutation: pools })).toBeUndefined();
    expect(workersWarning([w], targets, [], 'the rollout waits', { mutation: { kind: 'power-target', watts: 3000 } })).toBeUndefined();
  });
});

describe('the task runner, below the hand-on', () => {
  it('never reaches a miner without the password, nor in plaintext for a run that asked for TLS', async () => {
    const runner = createTaskRunner({ coreOptions: FAST_CORE, breakerTable: createSharedBreakerTable(64), credentials: [['default', simCreds], ['pool-b', { password: 'pool-secret' }]] });
    try {
      const m = tf.fleet.miners[2]!;
      const before = await tf.fleet.callCounts(m.id);
      const job = (credentials: string, tls: boolean) => ({ runId: 'r', operation: 'poll' as const, target: { minerId: m.id, host: m.host, port: m.port, site: 'site-a', tags: [], credentials }, params: {}, tls });
      expect(await runner({ job: job('default', true) })).toMatchObject({ code: 'INVALID_JOB', error: { message: 'this worker has no TLS for site "site-a"' } });
      expect(await runner({ job: job('site2', false) })).toMatchObject({ code: 'INVALID_JOB', error: { message: 'this worker has no credentials profile "site2"' } });
      expect(await runner({ job: job('pool-b', false) })).toMatchObject({ code: 'INVALID_JOB', error: { message: `this worker has no username in credentials profile "pool-b" (it holds a pool password only: add its "username" to this worker's --credentials file)` } });
      const pools = { kind: 'pools', groups: [{ name: 'Main', pools: [{ url: 'stratum+tcp://pool.example:3333', passwordRef: 'pool-main' }] }] };
      expect(await runner({ job: { ...job('default', false), operation: 'pools' as const, params: { mutation: pools } } })).toMatchObject({ code: 'INVALID_JOB', error: { message: 'this worker has no credentials profile "pool-main" (a pool password)' } });
      expect(await tf.fleet.callCounts(m.id)).toEqual(before);
    } finally {
      runner.close();
    }
  });

  it("reads a reboot's boot time on Redis's clock: the offset the processor measures is applied", async () => {
    const runner = createTaskRunner({ coreOptions: FAST_CORE, breakerTable: createSharedBreakerTable(64), credentials: [['default', simCreds]] });
    try {
      const m = tf.fleet.miners[5]!;
      const requestedAt = Date.now() - 1_000; // the wave started a second ago (Redis's clock)
      const job = { runId: 'clock', operation: 'reboot' as const, target: { minerId: m.id, host: m.host, port: m.port, site: 'site-a', tags: [], credentials: 'default' }, params: { mutation: { kind: 'reboot', notBeforeMs: requestedAt } } };
      const prepare = async (clockOffsetMs: number) => ((await runner({ job, phase: 'prepare', clockOffsetMs })).data as { before: { bootedAfterRequest: boolean } }).before.bootedAfterRequest;
      expect(await prepare(0)).toBe(false); // up for long: not rebooted since
      // Were Redis's clock a year ahead of this host's, the same boot would be long after the request.
      expect(await prepare(365 * 86_400_000)).toBe(true);
      // On one host the two clocks agree (to the round trip).
      expect(Math.abs(await redisClockOffsetMs(redis))).toBeLessThan(1_000);
    } finally {
      runner.close();
    }
  });

  it('a job\'s calls share one connection to its miner, even with more miners in flight than the pool keeps', async () => {
    // Each poll makes several calls; between two of them the other jobs' calls would evict the
    // channel of a pool this small, and the next call reconnect (a socket closing for each).
    const runner = createTaskRunner({ coreOptions: { ...FAST_CORE, pool: { maxConnections: 2 } }, breakerTable: createSharedBreakerTable(64), credentials: [['default', simCreds]] });
    try {
      const results = await Promise.all(
        tf.fleet.miners.map((m) => runner({ job: { runId: 'held', operation: 'poll' as const, target: { minerId: m.id, host: m.host, port: m.port, site: 'site-a', tags: [], credentials: 'default' }, params: {} } })),
      );
      expect(results.map((r) => r.code)).toEqual(tf.fleet.miners.map(() => 'OK'));
      expect(runner.poolStats()).toMatchObject({ created: COUNT, open: 2 });
    } finally {
      runner.close();
    }
  });
});

describe('the worker registry', () => {
  it('lists live workers by what they can do and forgets stopped ones', async () => {
    const prefix = uniquePrefix('reg');
    const a = new WorkerRegistry(redis, prefix, { profiles: ['default'], tlsSites: [] });
    const b = new WorkerRegistry(redis, prefix, { profiles: ['default', 'site2'], tlsSites: ['*'] });
    await a.start();
    await b.start();
    const job = (credentials: string, tls = false) => ({ target: { minerId: 'm', host: '127.0.0.1', port: 50051, site: 's', tags: [], credentials }, tls });
    // A job is handed on to the configuration of a live worker that can do it.
    expect(await a.handOnTarget(job('site2', true))).toBe(b.signature);
    expect(await b.handOnTarget(job('site2'))).toBeUndefined();
    expect(await b.handOnTarget(job('default'))).toBe(a.signature);
    expect(await a.liveSignatures()).toEqual(new Set([a.signature, b.signature]));
    await b.stop();
    const c = new WorkerRegistry(redis, prefix, { profiles: [], tlsSites: [] }); // fresh: no cached view
    expect(await c.handOnTarget(job('site2'))).toBeUndefined();
    expect(await c.handOnTarget(job('default'))).toBe(a.signature);
    await a.stop();
    expect(await redis.smembers(`${prefix}:workers`)).toEqual([]);
    // A worker of an earlier version announces no configuration: nothing is handed on to it, but a job
    // it can do is left in the run's queue for it.
    await redis.multi().set(`${prefix}:worker:old`, JSON.stringify({ id: 'old', host: 'h', pid: 1, startedAt: new Date().toISOString(), concurrency: 1, threads: 0, profiles: ['site2'], tlsSites: [] }), 'PX', 5_000).sadd(`${prefix}:workers`, 'old').exec();
    const d = new WorkerRegistry(redis, prefix, { profiles: [], tlsSites: [] });
    expect(await d.handOnTarget(job('site2'))).toBeUndefined();
    expect(await d.olderCanRun(job('site2'))).toBe(true);
    expect(await d.olderCanRun(job('default'))).toBe(false);
  });
});

describe('bos-fleet workers, and poll --enqueue-only', () => {
  it('lists the running workers, and warns when none runs or none has what some miners need', async () => {
    const prefix = uniquePrefix('reg');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-reg-'));
    const file = path.join(dir, 'farm.csv');
    writeFileSync(file, csv);
    const env = { REDIS_URL: redisUrl() }; // no passwords here: they live on the workers
    try {
      expect((await runCli(['workers', '--prefix', prefix], env)).stdout).toContain('no worker running');
      const alone = await runCli(['poll', '--inventory', file, '--enqueue-only', '--prefix', prefix], env);
      expect(alone.code).toBe(0);
      expect(alone.stderr).toContain('WARNING: no `bos-fleet worker` is running on this Redis and prefix');

      const w = await worker(prefix, { default: simCreds });
      try {
        const listed = await runCli(['workers', '--prefix', prefix, '--json'], env);
        expect(JSON.parse(listed.stdout)).toEqual([expect.objectContaining({ host: os.hostname(), pid: process.pid, concurrency: 4, threads: 0, profiles: ['default'], tlsSites: [] })]);
        expect((await runCli(['workers', '--prefix', prefix], env)).stdout).toMatch(new RegExp(`${process.pid}\\s+4\\s+0\\s+\\S+\\s+default / -`));
        const lacking = await runCli(['poll', '--inventory', file, '--enqueue-only', '--prefix', prefix], env);
        expect(lacking.stderr).toContain(`no running worker (1) has what some miners need, so they will end INVALID_JOB unless a worker that has it starts: ${COUNT / 2} miners need credentials profile "site2"`);
      } finally {
        await w.close();
      }
      expect((await runCli(['workers', '--prefix', prefix], env)).stdout).toContain('no worker running');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

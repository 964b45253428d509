// Rollouts to miners that serve the API over TLS: `--tls` marks the sites, the local worker (--wait,
// --dry-run) uses the files, a rollback goes over TLS where its rollout did, and a worker without the
// site's TLS file never changes such a miner in plaintext.
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunStore } from '../src/fleet/run-store.js';
import { startRollout } from '../src/rollout/create.js';
import { waitForRollout } from '../src/rollout/wait.js';
import { waveRunId } from '../src/rollout/store.js';
import { inventoryCsv } from '../src/sim/plan.js';
import { startWorker } from '../src/workers/worker.js';
import { makeTestCerts, type TestCerts } from './helpers/certs.js';
import { runCli, writeFleetFiles, type FleetFiles } from './helpers/cli.js';
import { FAST_CORE, startTestFleet, type TestFleet } from './helpers/fleet.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';

const COUNT = 4;
let certs: TestCerts;
let tf: TestFleet;
let files: FleetFiles;
let tlsFile: string;
let redis: Redis;
beforeAll(async () => {
  certs = makeTestCerts('127.34.0.1');
  tf = await startTestFleet(COUNT, '127.34.0.1', () => ({}), { tls: { keyPem: certs.serverKey, certPem: certs.serverCert } });
  files = writeFleetFiles(inventoryCsv(tf.fleet.miners.map((m, index) => ({ ...m, index }))));
  tlsFile = path.join(files.dir, 'tls.json');
  // One certificate for the whole farm, named miner.farm.local.
  writeFileSync(tlsFile, JSON.stringify({ '*': { caFile: certs.caFile, serverName: 'miner.farm.local' } }));
  redis = new Redis(redisUrl());
});
afterAll(async () => {
  redis.disconnect();
  await tf.fleet.close();
  rmSync(files.dir, { recursive: true, force: true });
  rmSync(certs.dir, { recursive: true, force: true });
});

const watts = async () => Promise.all(tf.fleet.miners.map(async (m) => (await tf.fleet.state(m.id)).powerTargetW));

describe('a rollout with --tls', () => {
  it('dry run, --wait and rollback reach the miners over TLS; a rollback without the TLS file is refused', async () => {
    const prefix = uniquePrefix('rotls');
    const was = await watts();
    const where = ['--credentials', files.credentials, '--redis', redisUrl(), '--prefix', prefix];
    const dry = await runCli(['rollout', 'start', '--inventory', files.inventory, ...where, '--tls', tlsFile, '--power-target', '2450', '--dry-run', '--json']);
    expect(dry.code).toBe(0);
    expect((JSON.parse(dry.stdout) as { miners: { result: string }[] }).miners.map((m) => m.result)).toEqual(Array(COUNT).fill('would-apply'));

    const r = await runCli(['rollout', 'start', '--inventory', files.inventory, ...where, '--tls', tlsFile, '--power-target', '2450', '--waves', '100%', '--yes', '--wait', '--json']);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { rolloutId: string; counts: Record<string, number> };
    expect(out.counts).toEqual({ OK: COUNT });
    const store = new RunStore(redis, prefix);
    expect((await store.getOutcomes(waveRunId(out.rolloutId, 0))).map((o) => o.transport)).toEqual(Array(COUNT).fill('tls'));
    expect(await watts()).toEqual(Array(COUNT).fill(2450));

    const refused = await runCli(['rollout', 'rollback', out.rolloutId, ...where, '--waves', '100%', '--yes', '--wait']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/went over TLS on sites? .*: pass --tls FILE/);
    const back = await runCli(['rollout', 'rollback', out.rolloutId, ...where, '--tls', tlsFile, '--waves', '100%', '--yes', '--wait', '--json']);
    expect(back.code).toBe(0);
    expect(await watts()).toEqual(was);
  });

  it('a farm CA without serverName: the miner is checked against its IP, with no Node deprecation warning in the output', async () => {
    // The certificate names 127.34.0.1 (miner 0) as an IP address; grpc-js passes that IP on as the TLS
    // server name, which Node answers with a DEP0123 DeprecationWarning unless bos-fleet drops it.
    const byIp = path.join(files.dir, 'tls-by-ip.json');
    writeFileSync(byIp, JSON.stringify({ '*': { caFile: certs.caFile } }));
    const where = ['--inventory', files.inventory, '--miner', tf.fleet.miners[0]!.id, '--credentials', files.credentials, '--tls', byIp, '--redis', redisUrl(), '--prefix', uniquePrefix('tlsip'), '--json'];
    for (const threads of ['0', '2']) {
      const r = await runCli(['poll', ...where, '--threads', threads]);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ total: 1, counts: { OK: 1 } });
      expect(r.stderr).not.toMatch(/Warning|DEP0123/);
    }
  });

  it('a worker without the TLS file never changes those miners in plaintext: INVALID_JOB naming the site, no write', async () => {
    const prefix = uniquePrefix('rotls');
    const writes = (await tf.fleet.mutations()).length;
    const rec = await startRollout(
      redis,
      { operation: 'power-target', spec: { kind: 'power-target', watts: 2350 }, targets: tf.inventory.targets, inventoryDigest: tf.inventory.digest, waves: [1], maxFailureRate: 1, minSample: 1, pauseBetweenMs: 0, actor: 'test', tlsSites: ['*'] },
      prefix,
    );
    const worker = await startWorker({ redisUrl: redisUrl(), prefix, threads: 0, concurrency: 4, credentials: tf.credentials, coreOptions: FAST_CORE });
    try {
      const report = await waitForRollout(redis, rec.rolloutId, prefix);
      expect(report.counts).toEqual({ INVALID_JOB: COUNT });
    } finally {
      await worker.close();
    }
    const outcomes = await new RunStore(redis, prefix).getOutcomes(waveRunId(rec.rolloutId, 0));
    for (const o of outcomes) expect(o.error?.message).toMatch(/no running worker has TLS for site/);
    expect((await tf.fleet.mutations()).length).toBe(writes);
  });

  it('a schedule keeps the TLS sites for the runs and rollouts its ticks start', async () => {
    const prefix = uniquePrefix('schtls');
    const r = await runCli(['schedule', 'add', 'poll', '--inventory', files.inventory, '--tls', tlsFile, '--every', '1h', '--id', 'tlspoll', '--redis', redisUrl(), '--prefix', prefix]);
    expect(r.code).toBe(0);
    const { getSchedule } = await import('../src/rollout/schedules.js');
    expect((await getSchedule(redis, 'tlspoll', prefix))?.tlsSites).toEqual(['*']);
    await runCli(['schedule', 'remove', 'tlspoll', '--redis', redisUrl(), '--prefix', prefix]);
  });
});

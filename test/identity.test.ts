// An inventory `mac` column: each job first checks the machine at the miner's address is that miner.
// After a DHCP lease moves, a poll must not report another machine's data as the named miner's, and a
// rollout must not change the other machine.
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseInventory } from '../src/producer/inventory.js';
import type { Outcome } from '../src/fleet/outcome.js';
import { expectExit, runCli, spawnCli, startCliFleet, type CliFleet } from './helpers/cli.js';
import { until } from './helpers/until.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';

describe('inventory mac column', () => {
  it('is normalized (case, dashes, no separators) and optional; a bad or repeated one is refused by line', () => {
    const inv = parseInventory(['id,host,mac', 'a,10.0.0.1,AA-BB-CC-DD-EE-01', 'b,10.0.0.2,aabbccddee02', 'c,10.0.0.3,'].join('\n'), 'farm.csv');
    expect(inv.targets.map((t) => t.mac)).toEqual(['aa:bb:cc:dd:ee:01', 'aa:bb:cc:dd:ee:02', undefined]);
    expect('mac' in inv.targets[2]!).toBe(false); // an inventory without macs keeps its digest
    expect(() => parseInventory(['id,host,mac', 'a,10.0.0.1,aa:bb:cc:dd:ee', 'b,10.0.0.2,AA:BB:CC:DD:EE:01', 'c,10.0.0.3,aa:bb:cc:dd:ee:01'].join('\n'), 'farm.csv')).toThrow(
      /line 2: field mac: "aa:bb:cc:dd:ee" is not a MAC address \(like aa:bb:cc:dd:ee:ff\)\n {2}line 4: field mac: "aa:bb:cc:dd:ee:01" duplicates line 3/,
    );
  });
});

describe('a machine that is not the miner the inventory names', () => {
  let cf: CliFleet;
  let file: string;
  beforeAll(async () => {
    cf = await startCliFleet(4, '127.49.0.1', undefined, undefined, { rebootDownMs: 1_000 });
    // m0000 and m0001 right; m0002 and m0003 have swapped addresses (each row names the other's MAC).
    const macs = await Promise.all(cf.tf.fleet.miners.map(async (m) => (await cf.tf.fleet.state(m.id)).macAddress));
    const rows = cf.tf.fleet.miners.map((m, i) => `${m.id},${m.host},${m.port},site-a,,default,${macs[i === 2 ? 3 : i === 3 ? 2 : i]!.toUpperCase()}`);
    file = path.join(cf.files.dir, 'with-macs.csv');
    writeFileSync(file, ['id,host,port,site,tags,credentials,mac', ...rows].join('\n'));
  });
  afterAll(async () => {
    rmSync(file, { force: true });
    await cf.close();
  });

  it('poll reports MINER_IDENTITY_MISMATCH with none of its data; rollout and dry run change nothing on it', async () => {
    const prefix = uniquePrefix('identity');
    const where = ['--redis', redisUrl(), '--prefix', prefix, '--credentials', cf.files.credentials];
    const poll = await runCli(['poll', '--inventory', file, '--json', ...where]);
    const { runId, counts } = JSON.parse(poll.stdout) as { runId: string; counts: Record<string, number> };
    expect(counts).toEqual({ OK: 2, MINER_IDENTITY_MISMATCH: 2 });
    const outcomes = JSON.parse((await runCli(['results', runId, '--format', 'json', ...where.slice(0, 4)])).stdout) as Outcome[];
    const swapped = outcomes.find((o) => o.minerId === 'm0002')!;
    expect(swapped).toMatchObject({ status: 'failed', code: 'MINER_IDENTITY_MISMATCH', error: { message: expect.stringMatching(/^the machine at 127\.49\.0\.3:50051 reports MAC 02:00:00:00:00:02; the inventory has 02:00:00:00:00:03 for m0002/) } });
    expect(swapped.data).toBeUndefined();
    expect(swapped.jobAttempts).toBe(1); // not retried: it will not become the other miner
    expect(outcomes.find((o) => o.minerId === 'm0000')).toMatchObject({ code: 'OK', data: { macAddress: '02:00:00:00:00:00' } });

    const before = (await cf.tf.fleet.mutations()).length;
    const dry = JSON.parse((await runCli(['rollout', 'start', '--inventory', file, '--power-target', '2500', '--dry-run', '--json', ...where])).stdout) as { miners: { minerId: string; code: string }[] };
    expect(dry.miners.map((m) => `${m.minerId} ${m.code}`)).toEqual(['m0000 OK', 'm0001 OK', 'm0002 MINER_IDENTITY_MISMATCH', 'm0003 MINER_IDENTITY_MISMATCH']);
    const rollout = await runCli(['rollout', 'start', '--inventory', file, '--power-target', '2500', '--waves', '100%', '--max-failure-rate', '60%', '--yes', '--wait', '--json', ...where]);
    expect(JSON.parse(rollout.stdout)).toMatchObject({ state: 'completed', counts: { OK: 2, MINER_IDENTITY_MISMATCH: 2 } });
    const writes = (await cf.tf.fleet.mutations()).slice(before);
    expect(writes.map((w) => w.minerId).sort()).toEqual(['m0000', 'm0001']);
  });

  it('a miner that comes back from a reboot with another machine in its place is MINER_IDENTITY_MISMATCH, not a verified reboot', async () => {
    const prefix = uniquePrefix('identity-reboot');
    const original = (await cf.tf.fleet.state('m0000')).macAddress;
    const rebooted = async () => (await cf.tf.fleet.mutations('m0000')).some((m) => m.method === 'Reboot');
    try {
      const child = spawnCli(['rollout', 'start', '--inventory', file, '--miner', 'm0000', '--action', 'reboot', '--waves', '100%', '--yes', '--wait', '--json', '--redis', redisUrl(), '--prefix', prefix, '--credentials', cf.files.credentials]);
      // While it is down, its address goes to another machine.
      await until(rebooted, 20_000, 20);
      await cf.tf.fleet.replaceMachine('m0000', '02:00:00:00:aa:00');
      await expectExit(child, 0);
      const report = JSON.parse(child.output().stdout) as { counts: Record<string, number>; rolloutId: string };
      expect(report.counts).toEqual({ MINER_IDENTITY_MISMATCH: 1 });
      const [outcome] = JSON.parse((await runCli(['results', `${report.rolloutId}-w0`, '--format', 'json', '--redis', redisUrl(), '--prefix', prefix])).stdout) as Outcome[];
      expect(outcome?.error?.message).toBe(`the machine at 127.49.0.1:50051 reports MAC 02:00:00:00:aa:00; the inventory has ${original} for m0000`);
    } finally {
      await cf.tf.fleet.replaceMachine('m0000', original);
    }
  });

  it('watch stops watching a machine that is not the miner, before reporting any status of it', async () => {
    const r = await runCli(['watch', '--inventory', file, '--credentials', cf.files.credentials, '--until', 'NORMAL', '--timeout', '20s', '--json']);
    expect(r.code).toBe(2);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { minerId: string; event: string; status?: string; code?: string; result?: string });
    const of = (id: string) => events.filter((e) => e.minerId === id).map((e) => e.status ?? e.code);
    expect([of('m0000'), of('m0001'), of('m0002'), of('m0003')]).toEqual([['NORMAL'], ['NORMAL'], ['MINER_IDENTITY_MISMATCH'], ['MINER_IDENTITY_MISMATCH']]);
    expect(events.at(-1)).toMatchObject({ event: 'end', result: 'out of reach' });
  });
});

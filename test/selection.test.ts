// --miner, --site, --tag: one inventory file, a site or a rack of it polled, changed, scheduled or
// watched; a value that matches no miner is refused by name, never quietly a smaller set.
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseInventory } from '../src/producer/inventory.js';
import { selectTargets } from '../src/producer/selection.js';
import { listSchedules } from '../src/rollout/schedules.js';
import { runCli, startCliFleet, type CliFleet } from './helpers/cli.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';

const CSV = [
  'id,host,port,site,tags,credentials',
  'a1,127.48.0.1,50051,site-a,rack-1;s19,default',
  'a2,127.48.0.2,50051,site-a,rack-1;s21,default',
  'a3,127.48.0.3,50051,site-a,rack-2;s19,default',
  'b1,127.48.0.4,50051,site-b,rack-3;s19,default',
  'b2,127.48.0.5,50051,site-b,rack-3;s21,default',
  'c1,127.48.0.6,50051,site-c,rack-4,default',
].join('\n');
const inventory = parseInventory(CSV, 'farm.csv');
const ids = (sel: Parameters<typeof selectTargets>[1]) => selectTargets(inventory, sel).targets.map((t) => t.minerId);

describe('selectTargets', () => {
  it('--site picks any of its sites, --tag needs every tag, --miner names miners; the kinds combine', () => {
    expect(ids({})).toEqual(['a1', 'a2', 'a3', 'b1', 'b2', 'c1']);
    expect(ids({ sites: ['site-a', 'site-c'] })).toEqual(['a1', 'a2', 'a3', 'c1']);
    expect(ids({ tags: ['s19'] })).toEqual(['a1', 'a3', 'b1']);
    expect(ids({ tags: ['s19', 'rack-1'] })).toEqual(['a1']);
    expect(ids({ sites: ['site-b'], tags: ['s21'] })).toEqual(['b2']);
    expect(ids({ miners: ['c1', 'a2'] })).toEqual(['a2', 'c1']);
    expect(ids({ miners: ['a1', 'b1'], sites: ['site-b'] })).toEqual(['b1']);
  });

  it('the selected set has a digest of its own (runs and audits name the set they changed)', () => {
    expect(selectTargets(inventory, { sites: ['site-a'] }).digest).not.toBe(inventory.digest);
    expect(selectTargets(inventory, { sites: ['site-a'] }).digest).toBe(selectTargets(inventory, { tags: [], sites: ['site-a'] }).digest);
  });

  it('a value matching no miner, or a combination matching none, is refused by name', () => {
    expect(() => ids({ sites: ['site-x'] })).toThrow('--site "site-x": inventory farm.csv has no miner at that site (its sites: site-a, site-b, site-c)');
    expect(() => ids({ tags: ['rack-9'] })).toThrow('--tag "rack-9": inventory farm.csv has no miner with that tag (its tags: rack-1, rack-2, rack-3, rack-4, s19, s21)');
    expect(() => ids({ miners: ['zz'] })).toThrow('--miner "zz": inventory farm.csv has no miner of that id');
    // site-c's only miner has neither tag: each value matches some miner, the whole matches none.
    expect(() => ids({ sites: ['site-c'], tags: ['s19'] })).toThrow('--site "site-c" --tag "s19": inventory farm.csv has no miner matching all of these');
  });
});

describe('the commands that take an inventory', () => {
  let cf: CliFleet;
  let file: string;
  beforeAll(async () => {
    cf = await startCliFleet(6, '127.48.0.1');
    file = path.join(cf.files.dir, 'racks.csv');
    writeFileSync(file, CSV);
  });
  afterAll(async () => {
    rmSync(file, { force: true });
    await cf.close();
  });

  it('poll, rollout --dry-run and schedule add work on the selected miners only, and say how many of how many', async () => {
    const prefix = uniquePrefix('select');
    const at = ['--redis', redisUrl(), '--prefix', prefix];
    const where = [...at, '--credentials', cf.files.credentials];
    const poll = await runCli(['poll', '--inventory', file, '--site', 'site-a', '--tag', 's19', '--json', ...where]);
    expect(poll.code).toBe(0);
    expect(JSON.parse(poll.stdout)).toMatchObject({ total: 2, counts: { OK: 2 } });
    expect(poll.stderr).toContain('bos-fleet: 2 of the 6 miners of ' + file + ' (--site "site-a" --tag "s19")');

    const dry = await runCli(['rollout', 'start', '--inventory', file, '--tag', 'rack-3', '--power-target', '2500', '--dry-run', '--json', ...where]);
    expect((JSON.parse(dry.stdout) as { miners: { minerId: string }[] }).miners.map((m) => m.minerId)).toEqual(['b1', 'b2']);

    const added = await runCli(['schedule', 'add', 'poll', '--inventory', file, '--miner', 'c1', '--miner', 'a2', '--cron', '0 0 1 1 *', '--id', 'two', ...at]);
    expect(added.code).toBe(0);
    const [schedule] = await listSchedules(cf.redis, prefix);
    expect(schedule?.targets.map((t) => t.minerId)).toEqual(['a2', 'c1']);

    const bad = await runCli(['poll', '--inventory', file, '--site', 'site-x', ...where]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('--site "site-x": inventory ' + file + ' has no miner at that site');
    // An empty value would pick the miners with no site: refused.
    const empty = await runCli(['poll', '--inventory', file, '--site', ' ', ...where]);
    expect(empty.code).toBe(1);
    expect(empty.stderr).toContain('--site needs a value, got " "');
  });
});

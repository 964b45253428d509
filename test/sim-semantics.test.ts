// The simulator's API semantics: mutations change state, are recorded, and obey constraints.
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimFleet } from '../src/sim/fleet.js';
import { assignFaults, parseFaultSpec } from '../src/sim/faults.js';
import { listenProblem, loopbackAddresses } from '../src/sim/addresses.js';
import { SIM_PASSWORD, SIM_USERNAME } from '../src/sim/miner.js';
import { planFleet } from '../src/sim/plan.js';
import { plainCall, plainClient, plainLogin } from './helpers/plain-client.js';

describe('fault spec', () => {
  it('parses kinds, fractions and parameters', () => {
    expect(parseFaultSpec('offline=2%,slow=5%:800ms,flaky=3%,old-api=10%')).toEqual([
      { kind: 'refuse', fraction: 0.02 },
      { kind: 'slow', fraction: 0.05, param: '800ms' },
      { kind: 'flaky', fraction: 0.03 },
      { kind: 'old-api', fraction: 0.1 },
    ]);
  });

  it('names the bad entry', () => {
    expect(() => parseFaultSpec('slow=5%:fast')).toThrow(/slow must be a duration like 800ms.*"fast"/);
    expect(() => parseFaultSpec('offline=60%,slow=50%')).toThrow(/110\.0%, above 100%/);
    expect(() => parseFaultSpec('offline')).toThrow(/entry "offline" must look like kind=N%/);
  });

  it('assigns exact counts to distinct miners, deterministically', () => {
    const mix = parseFaultSpec('offline=2%,old-api=10%');
    const a = assignFaults(mix, 1000, 7);
    expect([...a.values()].filter((f) => f.refuse).length).toBe(20);
    expect([...a.values()].filter((f) => f.oldApi).length).toBe(100);
    expect([...assignFaults(mix, 1000, 7).keys()]).toEqual([...a.keys()]);
  });

  it('keeps every address in loopback, skipping .0 and .255', () => {
    const hosts = loopbackAddresses('127.1.0.250', 10);
    expect(hosts).toContain('127.1.1.1');
    expect(hosts.some((h) => h.endsWith('.255') || h.endsWith('.0'))).toBe(false);
    expect(() => loopbackAddresses('10.0.0.1', 1)).toThrow(/loopback/);
    expect(planFleet({ miners: 3 }).map((m) => m.host)).toEqual(['127.1.0.1', '127.1.0.2', '127.1.0.3']);
  });
});

describe('simulated miner semantics', () => {
  let fleet: SimFleet;
  const [host] = loopbackAddresses('127.4.0.1', 1);
  let c: grpc.Client;
  let token: string;

  beforeAll(async () => {
    fleet = await SimFleet.start({ miners: [{ id: 'm1', index: 0, host: host!, port: 50051, faults: {} }], rebootDownMs: 200 });
    c = plainClient(host!, 50051);
    token = (await plainLogin(c, SIM_USERNAME, SIM_PASSWORD))!;
  });
  afterAll(async () => {
    c.close();
    await fleet.close();
  });

  it('SetPowerTarget inside the constraints applies and shows in later reads; outside is INVALID_ARGUMENT', async () => {
    const cons = await plainCall(c, 'configuration', 'GetConstraints', {}, { token });
    const pt = (cons.response?.['tunerConstraints'] as { powerTarget: { min: { watt: number }; max: { watt: number } } }).powerTarget;
    const watt = pt.min.watt + 100;
    const ok = await plainCall(c, 'performance', 'SetPowerTarget', { saveAction: 'SAVE_ACTION_SAVE_AND_APPLY', powerTarget: { watt } }, { token });
    expect(ok.response).toEqual({ powerTarget: { watt } });
    const tuner = await plainCall(c, 'performance', 'GetTunerState', {}, { token });
    expect(tuner.response).toMatchObject({ powerTargetModeState: { currentTarget: { watt } } });
    const bad = await plainCall(c, 'performance', 'SetPowerTarget', { powerTarget: { watt: pt.max.watt + 1 } }, { token });
    expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/not in allowed range/);
    const recs = await fleet.mutations('m1');
    expect(recs.filter((r) => r.method === 'SetPowerTarget').map((r) => r.result)).toEqual(['applied', 'rejected']);
  });

  it('PauseMining / ResumeMining answer already_* and move the status stream', async () => {
    const md = new grpc.Metadata();
    md.set('authorization', token);
    const seen: string[] = [];
    const stream = c.makeServerStreamRequest(
      '/braiins.bos.v1.MinerService/GetMinerStatus',
      () => Buffer.alloc(0),
      (b: Buffer) => b,
      {},
      md,
    );
    stream.on('data', (d: Buffer) => seen.push(d.toString('hex')));
    stream.on('error', () => undefined);
    expect((await plainCall(c, 'actions', 'PauseMining', {}, { token })).response).toEqual({ alreadyPaused: false });
    expect((await plainCall(c, 'actions', 'PauseMining', {}, { token })).response).toEqual({ alreadyPaused: true });
    expect((await plainCall(c, 'miner', 'GetMinerDetails', {}, { token })).response?.['status']).toBe('MINER_STATUS_PAUSED');
    expect((await plainCall(c, 'actions', 'ResumeMining', {}, { token })).response).toEqual({ alreadyMining: false });
    await new Promise((r) => setTimeout(r, 50));
    stream.cancel();
    expect(seen.length).toBe(3); // NORMAL, PAUSED, NORMAL
  });

  it('SetPoolGroups replaces the groups and rejects a bad URL', async () => {
    const groups = [{ name: 'Main', quota: { value: 1 }, pools: [{ url: 'stratum+tcp://pool.example:3333', user: 'acct.w1', password: 'x' }] }];
    const ok = await plainCall(c, 'pool', 'SetPoolGroups', { saveAction: 'SAVE_ACTION_SAVE_AND_APPLY', poolGroups: groups }, { token });
    expect(ok.code).toBe(grpc.status.OK);
    const read = await plainCall(c, 'pool', 'GetPoolGroups', {}, { token });
    expect(read.response).toMatchObject({ poolGroups: [{ name: 'Main', pools: [{ url: 'stratum+tcp://pool.example:3333', user: 'acct.w1', active: true }] }] });
    const bad = await plainCall(c, 'pool', 'SetPoolGroups', { poolGroups: [{ name: 'X', pools: [{ url: 'http://nope' }] }] }, { token });
    expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('Reboot makes the miner unreachable for a while, then back with uptime reset and sessions gone', async () => {
    const before = await fleet.state('m1');
    expect((await plainCall(c, 'actions', 'Reboot', {}, { token })).code).toBe(grpc.status.OK);
    await new Promise((r) => setTimeout(r, 60));
    const down = plainClient(host!, 50051);
    expect((await plainCall(down, 'version', 'GetApiVersion')).code).toBe(grpc.status.UNAVAILABLE);
    down.close();
    await new Promise((r) => setTimeout(r, 300));
    const up = plainClient(host!, 50051);
    expect((await plainCall(up, 'miner', 'GetMinerDetails', {}, { token })).code).toBe(grpc.status.UNAUTHENTICATED);
    const t2 = await plainLogin(up, SIM_USERNAME, SIM_PASSWORD);
    const details = await plainCall(up, 'miner', 'GetMinerDetails', {}, { token: t2 });
    expect(details.response?.['systemUptimeS']).toBeLessThan(5);
    expect((await fleet.state('m1')).bootedAtMs).toBeGreaterThan(before.bootedAtMs);
    up.close();
    token = t2!;
  });
});

describe('a miner address this host cannot listen on', () => {
  it('says why (macOS answers only on 127.0.0.1) and what to do; a taken address says to move; others pass as they are', () => {
    const errno = (code: string) => Object.assign(new Error(`listen ${code} 127.1.0.2:50051`), { code, address: '127.1.0.2', port: 50051 });
    expect(String(listenProblem(errno('EADDRNOTAVAIL')))).toBe(
      'Error: sim: cannot listen on 127.1.0.2:50051: this host has no such loopback address. The simulator gives every miner its own 127.x.y.z address, as a farm gives each its own IP; Linux answers on all of 127.0.0.0/8, macOS and the BSDs only on 127.0.0.1 unless each address is added (macOS: sudo ifconfig lo0 alias 127.1.0.2 up, for every address used). Run it on Linux (a container or VM will do), or add the addresses',
    );
    expect(String(listenProblem(errno('EADDRINUSE')))).toContain('sim: 127.1.0.2:50051 is already in use');
    const other = errno('EACCES');
    expect(listenProblem(other)).toBe(other);
  });
});

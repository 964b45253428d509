// What a plain grpc-js client sees from each simulated fault (the foundation's fault table).
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimFleet } from '../src/sim/fleet.js';
import type { MinerFaults } from '../src/sim/faults.js';
import { SIM_PASSWORD, SIM_USERNAME } from '../src/sim/miner.js';
import { loopbackAddresses } from '../src/sim/addresses.js';
import { plainCall, plainClient, plainLogin } from './helpers/plain-client.js';

const FAULTS: [name: string, faults: MinerFaults][] = [
  ['healthy', {}],
  ['refuse', { refuse: true }],
  ['blackhole', { blackhole: true }],
  ['hang', { hang: true }],
  ['slow', { slow: { latencyMs: 300 } }],
  ['flaky', { flaky: { failFirst: 2 } }],
  ['bad-auth', { badAuth: true }],
  ['token-expiry', { tokenExpiry: { ttlMs: 150 } }],
  ['oversized', { oversized: { bytes: 5 * 1024 * 1024 } }],
  ['malformed', { malformed: true }],
  ['garbage', { garbage: true }],
  ['overloaded', { overloaded: true }],
  ['old-api', { oldApi: true }],
  ['drop-stream', { dropStream: { afterMessages: 1 } }],
  ['reboot-loop', { rebootLoop: { upMs: 400, downMs: 600 } }],
];

let fleet: SimFleet;
const hosts = loopbackAddresses('127.2.0.1', FAULTS.length);
const ix = (name: string) => FAULTS.findIndex(([n]) => n === name);
const clientFor = (name: string) => plainClient(hosts[ix(name)]!, 50051);

beforeAll(async () => {
  fleet = await SimFleet.start({
    miners: FAULTS.map(([name, faults], index) => ({ id: name, index, host: hosts[index]!, port: 50051, faults })),
    rebootDownMs: 300,
  });
});
afterAll(() => fleet.close());

async function loginAndStats(name: string, deadlineMs = 1_000) {
  const c = clientFor(name);
  try {
    const token = await plainLogin(c, SIM_USERNAME, SIM_PASSWORD);
    return await plainCall(c, 'miner', 'GetMinerStats', {}, { token, deadlineMs });
  } finally {
    c.close();
  }
}

describe('simulated faults as a plain grpc-js client sees them', () => {
  it('healthy: Login + GetMinerStats answer OK with realistic data', async () => {
    const r = await loginAndStats('healthy');
    expect(r.code).toBe(grpc.status.OK);
    const stats = r.response?.['minerStats'] as { nominalHashrate: { gigahashPerSecond: number } };
    expect(stats.nominalHashrate.gigahashPerSecond).toBeGreaterThan(90_000);
  });

  it('no token → UNAUTHENTICATED; GetApiVersion needs none', async () => {
    const c = clientFor('healthy');
    expect((await plainCall(c, 'miner', 'GetMinerDetails')).code).toBe(grpc.status.UNAUTHENTICATED);
    const v = await plainCall(c, 'version', 'GetApiVersion');
    expect(v.response).toMatchObject({ major: 1, minor: 11, patch: 0 });
    c.close();
  });

  it('refuse → UNAVAILABLE fast (ECONNREFUSED)', async () => {
    const r = await plainCall(clientFor('refuse'), 'version', 'GetApiVersion');
    expect(r.code).toBe(grpc.status.UNAVAILABLE);
    expect(r.details).toMatch(/ECONNREFUSED/);
    expect(r.elapsedMs).toBeLessThan(1_000);
  });

  it('blackhole → DEADLINE_EXCEEDED at the deadline', async () => {
    const r = await plainCall(clientFor('blackhole'), 'version', 'GetApiVersion', {}, { deadlineMs: 300 });
    expect(r.code).toBe(grpc.status.DEADLINE_EXCEEDED);
  });

  it('hang → DEADLINE_EXCEEDED (connected, never answered)', async () => {
    const r = await plainCall(clientFor('hang'), 'version', 'GetApiVersion', {}, { deadlineMs: 300 });
    expect(r.code).toBe(grpc.status.DEADLINE_EXCEEDED);
  });

  it('slow → OK after the latency, DEADLINE_EXCEEDED under a tighter deadline', async () => {
    const c = clientFor('slow');
    const ok = await plainCall(c, 'version', 'GetApiVersion', {}, { deadlineMs: 2_000 });
    expect(ok.code).toBe(grpc.status.OK);
    expect(ok.elapsedMs).toBeGreaterThanOrEqual(290);
    const late = await plainCall(c, 'version', 'GetApiVersion', {}, { deadlineMs: 100 });
    expect(late.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    c.close();
  });

  it('flaky → UNAVAILABLE for the first K calls, then OK', async () => {
    const c = clientFor('flaky');
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push((await plainCall(c, 'version', 'GetApiVersion')).code);
    expect(codes).toEqual([grpc.status.UNAVAILABLE, grpc.status.UNAVAILABLE, grpc.status.OK]);
    c.close();
  });

  it('bad-auth → Login UNAUTHENTICATED', async () => {
    const r = await plainCall(clientFor('bad-auth'), 'auth', 'Login', { username: SIM_USERNAME, password: SIM_PASSWORD });
    expect(r.code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('token-expiry → UNAUTHENTICATED after the inactivity timeout', async () => {
    const c = clientFor('token-expiry');
    const token = await plainLogin(c, SIM_USERNAME, SIM_PASSWORD);
    expect((await plainCall(c, 'miner', 'GetMinerDetails', {}, { token })).code).toBe(grpc.status.OK);
    await new Promise((r) => setTimeout(r, 250));
    expect((await plainCall(c, 'miner', 'GetMinerDetails', {}, { token })).code).toBe(grpc.status.UNAUTHENTICATED);
    c.close();
  });

  it('oversized → RESOURCE_EXHAUSTED above the 4 MiB default receive limit', async () => {
    const r = await loginAndStats('oversized', 5_000);
    expect(r.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  });

  it('malformed → INTERNAL (response does not parse)', async () => {
    const r = await loginAndStats('malformed');
    expect(r.code).toBe(grpc.status.INTERNAL);
    expect(r.details).toMatch(/pars/i);
  });

  it('garbage (not a gRPC peer) → UNAVAILABLE', async () => {
    const r = await plainCall(clientFor('garbage'), 'version', 'GetApiVersion');
    expect(r.code).toBe(grpc.status.UNAVAILABLE);
  });

  it('overloaded → RESOURCE_EXHAUSTED', async () => {
    const r = await plainCall(clientFor('overloaded'), 'version', 'GetApiVersion');
    expect(r.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
  });

  it('old-api → token only in the response header; GetErrors and SetPoolGroups UNIMPLEMENTED', async () => {
    const c = clientFor('old-api');
    const login = await plainCall(c, 'auth', 'Login', { username: SIM_USERNAME, password: SIM_PASSWORD });
    expect(login.response?.['token']).toBe('');
    const token = login.header?.get('authorization')[0] as string;
    expect(token).toMatch(/^[0-9a-f]{32}$/);
    expect((await plainCall(c, 'version', 'GetApiVersion')).response).toMatchObject({ major: 1, minor: 0 });
    expect((await plainCall(c, 'miner', 'GetMinerDetails', {}, { token })).code).toBe(grpc.status.OK);
    expect((await plainCall(c, 'miner', 'GetErrors', {}, { token })).code).toBe(grpc.status.UNIMPLEMENTED);
    expect((await plainCall(c, 'pool', 'SetPoolGroups', {}, { token })).code).toBe(grpc.status.UNIMPLEMENTED);
    c.close();
  });

  it('drop-stream → the status stream ends with UNAVAILABLE after the first message', async () => {
    const c = clientFor('drop-stream');
    const token = await plainLogin(c, SIM_USERNAME, SIM_PASSWORD);
    const md = new grpc.Metadata();
    md.set('authorization', token!);
    const messages: unknown[] = [];
    const code = await new Promise<grpc.status>((resolve) => {
      const stream = c.makeServerStreamRequest(
        '/braiins.bos.v1.MinerService/GetMinerStatus',
        () => Buffer.alloc(0),
        (b: Buffer) => b,
        {},
        md,
        { deadline: Date.now() + 3_000 },
      );
      stream.on('data', (d) => messages.push(d));
      stream.on('error', (e: grpc.ServiceError) => resolve(e.code));
      stream.on('end', () => resolve(grpc.status.OK));
    });
    expect(messages.length).toBe(1);
    expect(code).toBe(grpc.status.UNAVAILABLE);
    c.close();
  });

  it('reboot-loop → OK while up, UNAVAILABLE while down, uptime reset after', async () => {
    // A fresh channel per probe: grpc-js would otherwise sit out its reconnect backoff.
    const seen = new Set<grpc.status>();
    const until = Date.now() + 3_000;
    while (Date.now() < until && seen.size < 2) {
      const c = clientFor('reboot-loop');
      seen.add((await plainCall(c, 'version', 'GetApiVersion', {}, { deadlineMs: 200 })).code);
      c.close();
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(seen).toContain(grpc.status.OK);
    expect(seen).toContain(grpc.status.UNAVAILABLE);
    const state = await fleet.state('reboot-loop');
    expect(Date.now() - state.bootedAtMs).toBeLessThan(5_000);
  });
});

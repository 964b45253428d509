// Keepalive that does not trip gRPC-core's ping policy, and a close() that lets the process exit.
import * as grpc from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PACKAGE_ROOT } from '../src/core/proto.js';
import { SimFleet } from '../src/sim/fleet.js';
import { simTarget, testCore } from './helpers/core.js';
import { plainCall } from './helpers/plain-client.js';

const HOST = '127.8.0.1';
let fleet: SimFleet;
beforeAll(async () => {
  fleet = await SimFleet.start({
    miners: [{ id: 'm', index: 0, host: HOST, port: 50051, faults: {} }],
    // gRPC core's rule, scaled down so the test runs in seconds: pings closer than 1 s are strikes.
    pingPolicy: { minPingIntervalMs: 1_000, maxPingStrikes: 2 },
  });
});
afterAll(() => fleet.close());

describe('keepalive', () => {
  it('an aggressive client keepalive is answered GOAWAY too_many_pings (the policy works)', async () => {
    const before = fleet.pingStats.goaways;
    const c = new grpc.Client(`${HOST}:50051`, grpc.credentials.createInsecure(), {
      'grpc.keepalive_time_ms': 100,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.enable_retries': 0,
    });
    expect((await plainCall(c, 'version', 'GetApiVersion')).code).toBe(grpc.status.OK);
    await new Promise((r) => setTimeout(r, 1_200));
    c.close();
    expect(fleet.pingStats.goaways).toBeGreaterThan(before);
  });

  it("the core's keepalive settings cause no strike over calls and idle gaps", async () => {
    const strikes = fleet.pingStats.strikes;
    const core = testCore();
    const m = core.miner(simTarget('m', HOST));
    for (let i = 0; i < 4; i++) {
      await m.getMinerStats();
      await new Promise((r) => setTimeout(r, 300));
    }
    core.close();
    expect(fleet.pingStats.strikes).toBe(strikes);
    expect(core.options.pool.keepaliveTimeMs).toBeGreaterThanOrEqual(300_000);
  });
});

describe('close()', () => {
  it('leaves no timer or socket behind: a process that used the core exits by itself', async () => {
    const script = `
      import { FleetCore } from ${JSON.stringify(path.join(PACKAGE_ROOT, 'dist/core/index.js'))};
      const core = new FleetCore({ connectTimeoutMs: 1000 });
      const m = core.miner({ id: 'm', host: '${HOST}', port: 50051, credentials: { username: 'root', password: 'sim-password' } });
      await m.getMinerStats();
      await m.getMinerDetails();
      console.log('open', core.pool.stats().open);
      core.close();
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const code = await new Promise<number | string>((resolve) => {
      const t = setTimeout(() => {
        child.kill('SIGKILL');
        resolve('did not exit within 10 s');
      }, 10_000);
      child.on('exit', (c) => {
        clearTimeout(t);
        resolve(c ?? -1);
      });
    });
    expect(out.trim()).toBe('open 1');
    expect(code).toBe(0);
  });
});

// A simulated fleet across shard processes: every miner answers Login + GetMinerStats. The 10,000-
// and 100,000-miner fleets are `npm run bench`'s (each mode's counts by code are in its results file).
import * as grpc from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { SimCluster } from '../src/sim/cluster.js';
import { planFleet } from '../src/sim/plan.js';
import { SIM_PASSWORD, SIM_USERNAME } from '../src/sim/miner.js';
import { plainCall, plainClient, plainLogin } from './helpers/plain-client.js';

const MINERS = 2_400;
let fleet: SimCluster | undefined;
afterAll(() => fleet?.close());

describe(`${MINERS} simulated miners in three shard processes`, () => {
  it('start on their own loopback addresses and each answers Login + GetMinerStats', async () => {
    const started = Date.now();
    fleet = await SimCluster.start({ miners: planFleet({ miners: MINERS, base: '127.3.0.1' }) }, MINERS / 3);
    const startMs = Date.now() - started;
    expect(fleet.pids()).toHaveLength(3);
    expect(new Set(fleet.miners.map((m) => m.host)).size).toBe(MINERS);

    const queue = [...fleet.miners];
    const failures: string[] = [];
    let ok = 0;
    const workers = Array.from({ length: 256 }, async () => {
      for (let m = queue.pop(); m; m = queue.pop()) {
        const c = plainClient(m.host, m.port);
        try {
          // As long a deadline as the read's: on a loaded machine a login can take over the default 2 s.
          const token = await plainLogin(c, SIM_USERNAME, SIM_PASSWORD, 10_000);
          if (!token) {
            failures.push(`${m.id}: no token from Login`);
            continue;
          }
          const r = await plainCall(c, 'miner', 'GetMinerStats', {}, { token, deadlineMs: 10_000 });
          if (r.code === grpc.status.OK && r.response?.['minerStats']) ok++;
          else failures.push(`${m.id}: ${r.code} ${r.details}`);
        } finally {
          c.close();
        }
      }
    });
    await Promise.all(workers);
    console.log(`${MINERS}-miner sim: started in ${startMs} ms, polled in ${Date.now() - started - startMs} ms`);
    expect(failures.slice(0, 5)).toEqual([]);
    expect(ok).toBe(MINERS);
  }, 120_000);
});

describe('a simulated fleet whose shard dies (Ctrl-C reaches the whole process group)', () => {
  it('fails calls to that shard with a clear error, never crashes its controller, and closes', async () => {
    const sim = await SimCluster.start({ miners: planFleet({ miners: 6, base: '127.3.100.1' }) }, 3);
    const [first, second] = sim.pids();
    process.kill(first!, 'SIGINT');
    await new Promise((r) => setTimeout(r, 300));
    await expect(sim.callCounts(sim.miners[0]!.id)).rejects.toThrow(/sim shard (exited with SIGINT|is gone)/);
    await expect(sim.callCounts(sim.miners[3]!.id)).resolves.toBeDefined(); // the other shard still answers
    await sim.close();
    expect(() => process.kill(second!, 0)).toThrow(); // closed: no shard left running
  }, 30_000);
});

// The shared breaker table under real threads: slots claimed, freed and reused by several threads at
// once never lose an update, never give one miner two slots, and never deadlock.
import { Worker } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SharedBreakerStore, createSharedBreakerTable } from '../src/core/breaker-table.js';

// Runs in each thread (plain JS against the build: `npm test` builds first).
const THREAD = `
const { workerData, parentPort } = require('node:worker_threads');
import(workerData.module).then(({ SharedBreakerStore }) => {
  const store = new SharedBreakerStore(workerData.table);
  const counted = {};
  let seed = workerData.seed;
  const rand = (n) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16) % n;
  for (let i = 0; i < workerData.ops; i++) {
    if (rand(2) === 0) {
      // A counted miner: its record stays live, and every increment must survive.
      const key = 'counted-' + rand(workerData.counted);
      store.update(key, (rec) => { rec.state = 1; rec.halfOpenOk++; });
      counted[key] = (counted[key] ?? 0) + 1;
    } else {
      // A churning miner: its record flips between live and fresh, so its slot is claimed and freed.
      const key = 'churn-' + rand(workerData.churning);
      store.update(key, (rec) => { rec.lastFailure = rec.lastFailure < 0 ? 0 : -1; }, () => false);
      counted[key] = (counted[key] ?? 0) + 1;
    }
  }
  parentPort.postMessage(counted);
});
`;

describe('shared breaker table across threads', () => {
  it('claims, frees and reuses slots from 3 threads with every counted update kept', async () => {
    const table = createSharedBreakerTable(48); // 16 counted + up to 24 churning miners in 48 slots: long shared runs
    const module = pathToFileURL(resolve('dist/core/breaker-table.js')).href;
    const results = await Promise.all(
      [1, 2, 3].map(
        (seed) =>
          new Promise<Record<string, number>>((done, fail) => {
            const w = new Worker(THREAD, { eval: true, workerData: { module, table, seed, ops: 200_000, counted: 16, churning: 24 } });
            w.once('message', (m: Record<string, number>) => done(m));
            w.once('error', fail);
          }),
      ),
    );
    const store = new SharedBreakerStore(table);
    let live = 0;
    for (let k = 0; k < 16; k++) {
      const key = `counted-${k}`;
      const expected = results.reduce((sum, r) => sum + (r[key] ?? 0), 0);
      expect(expected).toBeGreaterThan(1_000);
      expect(store.read(key).halfOpenOk).toBe(expected);
      live++;
    }
    // A churning miner is live exactly when it was flipped an odd number of times in all.
    for (let k = 0; k < 24; k++) {
      const key = `churn-${k}`;
      const flips = results.reduce((sum, r) => sum + (r[key] ?? 0), 0);
      expect(flips).toBeGreaterThan(1_000);
      expect({ key, live: store.read(key).lastFailure >= 0 }).toEqual({ key, live: flips % 2 === 1 });
      if (flips % 2 === 1) live++;
    }
    expect(store.liveSlots).toBe(live); // nobody holds a second slot
  }, 60_000);
});

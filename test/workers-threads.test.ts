// Piscina threads: breaker state is one per miner across all threads of a worker.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSharedBreakerTable } from '../src/core/breaker-table.js';
import type { JobData } from '../src/fleet/job.js';
import { createExecutor, type Executor } from '../src/workers/executor.js';
import { FAST_CORE, startTestFleet, type TestFleet } from './helpers/fleet.js';

let tf: TestFleet;
let executor: Executor;
beforeAll(async () => {
  tf = await startTestFleet(2, '127.13.0.1', (i) => (i === 0 ? { overloaded: true } : {}));
  executor = createExecutor(
    {
      coreOptions: { ...FAST_CORE, breaker: { failureThreshold: 4, openMs: 60_000 } },
      breakerTable: createSharedBreakerTable(1024),
      credentials: [...tf.credentials.entries()],
    },
    2,
    16,
  );
});
afterAll(async () => {
  await executor.close();
  await tf.fleet.close();
});

const job = (i: number): JobData => {
  const t = tf.inventory.targets[i]!;
  return { runId: 'run-threads', operation: 'poll', target: t, params: {} };
};

describe('worker threads', () => {
  it('a breaker opened by one thread makes every thread fail fast for that miner', async () => {
    // Both threads get tasks for the overloaded miner until its breaker opens.
    const first = await Promise.all([executor.run({ job: job(0) }), executor.run({ job: job(0) })]);
    expect(first.map((r) => r.code)).toEqual(['MINER_OVERLOADED', 'MINER_OVERLOADED']);
    const calls = await tf.fleet.callCounts(tf.fleet.miners[0]!.id);
    const later = await Promise.all(Array.from({ length: 8 }, () => executor.run({ job: job(0) })));
    expect(later.every((r) => r.code === 'CIRCUIT_OPEN')).toBe(true);
    expect(await tf.fleet.callCounts(tf.fleet.miners[0]!.id)).toEqual(calls); // no traffic from any thread
    // The healthy miner is unaffected, and results crossed the thread boundary as plain data.
    const ok = await executor.run({ job: job(1) });
    expect(ok).toMatchObject({ ok: true, code: 'OK', transport: 'plaintext' });
    expect(Object.getPrototypeOf(later[0]!.error)).toBe(Object.prototype);
  });
});

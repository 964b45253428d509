// A worker that stops running for a while (SIGSTOP, a paused VM, swapping, a starved CPU) sees its
// calls' deadlines fire late, all at once, when it runs again — with the miners' replies still unread
// in their sockets. Those timeouts are its own, not the miners': they must not open breakers (which
// then failed the next 30 s of polls of healthy miners with CIRCUIT_OPEN, as `npm run chaos` found).
import { status as GrpcStatus } from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FleetError, type FleetCore } from '../src/core/index.js';
import { blameStall, STALL_MS } from '../src/core/stall.js';
import { SimFleet } from '../src/sim/fleet.js';
import { pollMiner } from '../src/workers/ops/poll.js';
import { namedMiners, simTarget, testCore } from './helpers/core.js';

const NAMES = ['a', 'b', 'c', 'd'] as const;
const { host, specs } = namedMiners(NAMES, '127.50.0.1');
let fleet: SimFleet;
let core: FleetCore;

beforeAll(async () => {
  fleet = await SimFleet.start({ miners: specs(() => ({ slow: { latencyMs: 300 } })) });
});
afterAll(() => fleet.close());
afterEach(() => core?.close());

/** This thread does not run for `ms` (as if stopped): timers and sockets wait. */
function stall(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe('a stall of this process', () => {
  it('times out the calls in flight, but opens no breaker: the polls are tried again and end OK', async () => {
    // The default breaker: 5 failures open it (a poll's 7 reads timing out together would).
    core = testCore({ readTimeoutMs: 1_000, callBudgetMs: 6_000, breaker: {} });
    const miners = NAMES.map((n) => core.miner(simTarget(n, host(n))));
    await Promise.all(miners.map((m) => pollMiner(m))); // warm: version and token known, channels open
    const polls = miners.map((m) => pollMiner(m));
    await new Promise((r) => setTimeout(r, 50)); // the reads are on the wire
    stall(2_500);
    const settled = await Promise.allSettled(polls);
    expect(settled.map((s) => (s.status === 'rejected' ? FleetError.from(s.reason).code : 'OK'))).toEqual(NAMES.map(() => 'OK'));
    // They did time out (then were tried again), and no breaker counted it.
    for (const [i, m] of miners.entries()) {
      expect(m.stats.attempts, NAMES[i]).toBeGreaterThan(m.stats.calls);
      expect(core.breaker(m.key).state).toBe('CLOSED');
    }
  });
});

describe('blameStall', () => {
  const timeout = new FleetError('MINER_TIMEOUT', 'deadline', { minerId: 'm1' });
  it('marks a timeout seen long past its deadline, and says so', () => {
    const marked = blameStall(timeout, performance.now() - STALL_MS - 500);
    expect(marked.code).toBe('MINER_TIMEOUT');
    expect(marked.context.stalledMs).toBeGreaterThanOrEqual(STALL_MS + 500);
    expect(marked.message).toMatch(/^deadline \(this worker did not run for 1\.5 s past the deadline .*: not counted against the miner\)$/);
    // A write's timeout too.
    const write = new FleetError('OUTCOME_UNKNOWN', 'deadline', { grpcCode: GrpcStatus.DEADLINE_EXCEEDED, mutation: true });
    expect(blameStall(write, performance.now() - 2 * STALL_MS).context.stalledMs).toBeGreaterThan(0);
  });
  it('leaves a timeout on time, and any other failure, as it is', () => {
    expect(blameStall(timeout, performance.now() - 200)).toBe(timeout);
    expect(blameStall(timeout, Infinity)).toBe(timeout);
    const refused = new FleetError('MINER_UNREACHABLE', 'refused');
    expect(blameStall(refused, performance.now() - 5 * STALL_MS)).toBe(refused);
    const lost = new FleetError('OUTCOME_UNKNOWN', 'reset', { grpcCode: GrpcStatus.UNAVAILABLE });
    expect(blameStall(lost, performance.now() - 5 * STALL_MS)).toBe(lost);
  });
});

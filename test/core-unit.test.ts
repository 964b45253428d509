// Unit tests of the core's pieces: fake clock, injected randomness, no network, no real sleeps.
import * as grpc from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { backoffDelayMs } from '../src/core/backoff.js';
import { Breaker, type BreakerOptions } from '../src/core/breaker.js';
import { HAS_FAILURES, MemoryBreakerStore } from '../src/core/breaker-store.js';
import { SharedBreakerStore, createSharedBreakerTable } from '../src/core/breaker-table.js';
import { withBreaker } from '../src/core/breaker-guard.js';
import { FakeClock } from '../src/core/clock.js';
import { FleetCore } from '../src/core/fleet-core.js';
import { FleetError } from '../src/core/fleet-error.js';
import { CODE_INFO } from '../src/core/error-codes.js';
import { parseCoreOptions } from '../src/core/options.js';
import { grpcTarget } from '../src/core/channel-options.js';
import { ConnectionPool } from '../src/core/pool.js';
import type { ClientLike } from '../src/core/channel.js';
import { shouldRetry, withRetry } from '../src/core/retry.js';

const grpcErr = (code: grpc.status, details: string) => Object.assign(new Error(details), { code, details });

describe('backoff', () => {
  it('is capped exponential with full jitter', () => {
    const opts = { baseDelayMs: 100, maxDelayMs: 1_000 };
    expect(backoffDelayMs(1, { ...opts, random: () => 0 })).toBe(0);
    expect(backoffDelayMs(1, { ...opts, random: () => 0.999 })).toBe(99);
    expect(backoffDelayMs(3, { ...opts, random: () => 0.999 })).toBe(399);
    expect(backoffDelayMs(10, { ...opts, random: () => 0.999 })).toBe(999); // capped
    const seen = new Set(Array.from({ length: 50 }, (_, i) => backoffDelayMs(4, { ...opts, random: () => i / 50 })));
    expect(seen.size).toBeGreaterThan(40); // jitter spreads the delays
    for (const d of seen) expect(d).toBeLessThan(800);
  });
});

describe('FleetError.from', () => {
  it.each([
    [grpc.status.UNAVAILABLE, 'No connection established. Last error: connect ECONNREFUSED 127.1.0.1:50051', 'MINER_UNREACHABLE', false],
    [grpc.status.UNAVAILABLE, 'Connection dropped', 'CONNECTION_LOST', true],
    // grpc-js's DNS resolver, for an inventory host name that does not resolve: nothing was sent.
    [grpc.status.UNAVAILABLE, 'Name resolution failed for target dns:miner-17.farm.example:50051', 'MINER_UNREACHABLE', false],
    [grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded after 3.001s,waiting for name resolution', 'MINER_TIMEOUT', false],
    [grpc.status.UNAVAILABLE, 'Protocol error', 'PROTOCOL_ERROR', true],
    [grpc.status.UNAVAILABLE, 'No connection established. Last error: Error: self-signed certificate', 'TLS_ERROR', false],
    [grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded after 0.300s,Waiting for LB pick', 'MINER_TIMEOUT', false],
    [grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded after 5.001s,remote_addr=127.1.0.1:50051', 'MINER_TIMEOUT', true],
    [grpc.status.RESOURCE_EXHAUSTED, 'Received message larger than max (5242880 vs 524288)', 'RESPONSE_TOO_LARGE', true],
    [grpc.status.RESOURCE_EXHAUSTED, 'too many concurrent requests', 'MINER_OVERLOADED', true],
    [grpc.status.UNAUTHENTICATED, 'invalid username or password', 'MINER_AUTH_FAILED', true],
    [grpc.status.PERMISSION_DENIED, 'denied', 'MINER_PERMISSION_DENIED', true],
    [grpc.status.UNIMPLEMENTED, 'not implemented', 'UNSUPPORTED_BY_FIRMWARE', true],
    [grpc.status.INVALID_ARGUMENT, 'power target [0W] not in allowed range [1700, 6500]', 'INVALID_REQUEST', true],
    [grpc.status.INTERNAL, 'Response message parsing error', 'PROTOCOL_ERROR', true],
    [grpc.status.CANCELLED, 'Cancelled on client', 'CANCELLED', true],
  ] as const)('status %i "%s" → %s', (code, details, expected, reached) => {
    const e = FleetError.from(grpcErr(code, details), { minerId: 'm1' });
    expect(e.code).toBe(expected);
    expect(e.context.minerId).toBe('m1');
    expect(e.context.mayHaveReachedMiner !== false).toBe(reached);
    expect(e.suggestion.length).toBeGreaterThan(20);
  });

  it('a mutation interrupted after it may have arrived is OUTCOME_UNKNOWN; one that never left is not', () => {
    expect(FleetError.from(grpcErr(grpc.status.UNAVAILABLE, 'Connection dropped'), { mutation: true }).code).toBe('OUTCOME_UNKNOWN');
    expect(FleetError.from(grpcErr(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded after 5s'), { mutation: true }).code).toBe('OUTCOME_UNKNOWN');
    // grpc-js's per-stage timings are dropped from the message; the address stays.
    expect(FleetError.from(grpcErr(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded after 10.001s,LB pick: 0.001s,metadata filters: 0.001s,remote_addr=127.31.0.48:50051')).message).toBe(
      'Deadline exceeded after 10.001s,remote_addr=127.31.0.48:50051',
    );
    expect(FleetError.from(grpcErr(grpc.status.UNAVAILABLE, 'No connection established. Last error: connect ECONNREFUSED'), { mutation: true }).code).toBe('MINER_UNREACHABLE');
    // A host name that does not resolve: the write never left (it was OUTCOME_UNKNOWN, and a rollback listed the miner as maybe changed).
    expect(FleetError.from(grpcErr(grpc.status.UNAVAILABLE, 'Name resolution failed for target dns:nosuch.invalid:50051'), { mutation: true }).code).toBe('MINER_UNREACHABLE');
  });

  it('this host out of descriptors or ports is WORKER_OUT_OF_RESOURCES: retryable, never sent, not the miner\'s fault (its breaker does not count it)', () => {
    const emfile = FleetError.from(grpcErr(grpc.status.UNAVAILABLE, 'No connection established. Last error: Error: connect EMFILE 127.70.0.9:50051 - Local (undefined:undefined). Resolution note: '), { mutation: true });
    expect([emfile.code, emfile.retryable, emfile.context.mayHaveReachedMiner]).toEqual(['WORKER_OUT_OF_RESOURCES', true, false]);
    expect(CODE_INFO.WORKER_OUT_OF_RESOURCES.minerFault).toBe(false);
    expect(emfile.suggestion).toContain('ulimit -n');
    expect(FleetError.from(grpcErr(grpc.status.UNAVAILABLE, 'No connection established. Last error: Error: connect EADDRNOTAVAIL 10.0.0.1:50051 - Local (0.0.0.0:0)')).code).toBe('WORKER_OUT_OF_RESOURCES');
    expect(FleetError.from(Object.assign(new Error('x'), { code: 'ENFILE' })).code).toBe('WORKER_OUT_OF_RESOURCES');
  });

  it('a port that took the connection and closed it is MINER_UNREACHABLE, saying so; over plaintext it names TLS', () => {
    const closed = grpcErr(grpc.status.UNAVAILABLE, 'No connection established. Last error: Failed to connect (2026-11-30T23:28:54.449Z). Resolution note: ');
    const plain = FleetError.from(closed, { mutation: true, transport: 'plaintext' });
    expect(plain.code).toBe('MINER_UNREACHABLE');
    expect(plain.context.mayHaveReachedMiner).toBe(false);
    expect(plain.message).toBe(
      "No connection established. Last error: Failed to connect (2026-11-30T23:28:54.449Z): the miner's port took the connection and closed it before gRPC began: a miner that serves TLS only does that to a plaintext client (if it does, give its site in --tls)",
    );
    expect(FleetError.from(closed, { transport: 'tls' }).message).toMatch(/closed it before gRPC began \(its gRPC server still starting, or another service on the port\?\)$/);
  });

  it('maps Node errnos and survives a structured clone (no instanceof needed)', () => {
    expect(FleetError.from(Object.assign(new Error('x'), { code: 'EHOSTUNREACH' })).code).toBe('MINER_UNREACHABLE');
    expect(FleetError.from(Object.assign(new Error('x'), { code: 'ECONNRESET' })).code).toBe('CONNECTION_LOST');
    const plain = structuredClone(new FleetError('CIRCUIT_OPEN', 'open', { minerId: 'm9', attempts: 0 }).toPlain());
    const back = FleetError.from(plain);
    expect(back.code).toBe('CIRCUIT_OPEN');
    expect(back.context.minerId).toBe('m9');
    expect(FleetError.from('weird').code).toBe('INTERNAL');
  });
});

describe('retry', () => {
  const policy = { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 1_000, budgetMs: 10_000 };
  const read = { mutation: false, idempotent: true };

  it('classifies: reads retry on retryable codes; mutations only if unsent or idempotent', () => {
    const unreachable = new FleetError('MINER_UNREACHABLE', 'refused', { mayHaveReachedMiner: false });
    const lost = new FleetError('CONNECTION_LOST', 'dropped');
    expect(shouldRetry(unreachable, read)).toBe(true);
    expect(shouldRetry(new FleetError('INVALID_REQUEST', 'x'), read)).toBe(false);
    expect(shouldRetry(new FleetError('CIRCUIT_OPEN', 'x'), read)).toBe(false);
    expect(shouldRetry(unreachable, { mutation: true, idempotent: false })).toBe(true);
    expect(shouldRetry(lost, { mutation: true, idempotent: false })).toBe(false);
    expect(shouldRetry(lost, { mutation: true, idempotent: true })).toBe(true);
    expect(shouldRetry(new FleetError('OUTCOME_UNKNOWN', 'x'), { mutation: true, idempotent: true })).toBe(false);
  });

  it('retries UNAVAILABLE with backoff waits and reports the attempts', async () => {
    const clock = new FakeClock();
    let calls = 0;
    const p = withRetry(
      async () => {
        calls++;
        if (calls < 3) throw grpcErr(grpc.status.UNAVAILABLE, 'Connection dropped');
        return 'ok';
      },
      policy,
      { clock, random: () => 0.5 },
      read,
    );
    await clock.advance(10_000);
    await expect(p).resolves.toEqual({ value: 'ok', attempts: 3 });
  });

  it('does not retry INVALID_ARGUMENT', async () => {
    const clock = new FakeClock();
    let calls = 0;
    const p = withRetry(async () => {
      calls++;
      throw grpcErr(grpc.status.INVALID_ARGUMENT, 'out of range');
    }, policy, { clock }, read);
    await expect(p).rejects.toMatchObject({ code: 'INVALID_REQUEST', context: { attempts: 1 } });
    expect(calls).toBe(1);
  });

  it('stops when the budget cannot fit another attempt', async () => {
    const clock = new FakeClock();
    let calls = 0;
    const p = withRetry(
      async () => {
        calls++;
        await clock.sleep(900);
        throw grpcErr(grpc.status.UNAVAILABLE, 'Connection dropped');
      },
      { ...policy, maxAttempts: 10, budgetMs: 2_000 },
      { clock, random: () => 0.99 },
      read,
    );
    p.catch(() => undefined);
    await clock.advance(20_000);
    await expect(p).rejects.toMatchObject({ code: 'CONNECTION_LOST' });
    expect(calls).toBe(2);
  });
});

const BREAKER: BreakerOptions = { failureThreshold: 3, windowMs: 10_000, openMs: 5_000, halfOpenSuccesses: 2, probeLeaseMs: 30_000 };

describe.each([
  ['memory', () => new MemoryBreakerStore()],
  ['shared', () => new SharedBreakerStore(createSharedBreakerTable(64))],
])('breaker (%s store)', (_name, makeStore) => {
  it('opens on N failures within the rolling window, not on N spread out', async () => {
    const clock = new FakeClock();
    const b = new Breaker(makeStore(), 'm1', BREAKER, clock);
    b.failure();
    await clock.advance(6_000);
    b.failure();
    await clock.advance(6_000); // the first failure left the window
    expect(b.failure()).toBe(false);
    expect(b.state).toBe('CLOSED');
    expect(b.failure()).toBe(true);
    expect(b.state).toBe('OPEN');
    expect(b.admit()).toBe('rejected');
  });

  it('half-open lets exactly one probe through and closes after M successes', async () => {
    const clock = new FakeClock();
    const b = new Breaker(makeStore(), 'm1', BREAKER, clock);
    for (let i = 0; i < 3; i++) b.failure();
    await clock.advance(5_000);
    expect(b.state).toBe('HALF_OPEN');
    expect(b.admit()).toBe('probe');
    expect(b.admit()).toBe('rejected'); // a second caller while the probe is out
    b.success();
    expect(b.state).toBe('HALF_OPEN'); // M = 2
    expect(b.admit()).toBe('probe');
    b.success();
    expect(b.state).toBe('CLOSED');
    expect(b.admit()).toBe('allowed');
  });

  it('a failed probe reopens; a released probe frees the slot', async () => {
    const clock = new FakeClock();
    const b = new Breaker(makeStore(), 'm1', BREAKER, clock);
    for (let i = 0; i < 3; i++) b.failure();
    await clock.advance(5_000);
    expect(b.admit()).toBe('probe');
    b.failure();
    expect(b.state).toBe('OPEN');
    await clock.advance(5_000);
    expect(b.admit()).toBe('probe');
    b.release();
    expect(b.admit()).toBe('probe');
  });

  it('only miner-side failures count (our INVALID_REQUEST never opens it)', async () => {
    const clock = new FakeClock();
    const b = new Breaker(makeStore(), 'm1', { ...BREAKER, failureThreshold: 1 }, clock);
    await expect(withBreaker(b, {}, async () => Promise.reject(grpcErr(grpc.status.INVALID_ARGUMENT, 'bad')))).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    expect(b.state).toBe('CLOSED');
    await expect(withBreaker(b, {}, async () => Promise.reject(grpcErr(grpc.status.UNAVAILABLE, 'No connection established')))).rejects.toMatchObject({ code: 'MINER_UNREACHABLE' });
    expect(b.state).toBe('OPEN');
    let ran = false;
    await expect(withBreaker(b, { minerId: 'm1' }, async () => { ran = true; })).rejects.toMatchObject({ code: 'CIRCUIT_OPEN' });
    expect(ran).toBe(false);
  });
});

describe('shared breaker table', () => {
  it('is one state for every Breaker over the same table (as threads share it)', () => {
    const table = createSharedBreakerTable(128);
    const clock = new FakeClock();
    const a = new Breaker(new SharedBreakerStore(table), 'miner-7', BREAKER, clock);
    const b = new Breaker(new SharedBreakerStore(structuredClone(table)), 'miner-7', BREAKER, clock);
    for (let i = 0; i < 3; i++) a.failure();
    expect(b.state).toBe('OPEN'); // a SharedArrayBuffer survives structuredClone as the same memory
    expect(new Breaker(new SharedBreakerStore(table), 'miner-8', BREAKER, clock).state).toBe('CLOSED');
  });

  it('peek (the lock-free hot-path read) sees what the locked updates wrote, past colliding slots', async () => {
    const table = createSharedBreakerTable(4); // 4 slots: keys collide and probe onwards
    const clock = new FakeClock();
    const store = new SharedBreakerStore(table);
    const others = ['m-a', 'm-b', 'm-d'];
    for (const k of others) new Breaker(store, k, BREAKER, clock).failure(); // one failure each: a live record
    const breaker = new Breaker(store, 'm-c', BREAKER, clock);
    for (let i = 0; i < 3; i++) breaker.failure();
    expect(store.liveSlots).toBe(4);
    expect(['m-a', 'm-b', 'm-c', 'm-d'].map((k) => store.peek(k))).toEqual([HAS_FAILURES, HAS_FAILURES, 1, HAS_FAILURES]);
    expect(store.peek('not-there')).toBe(0);
    expect(breaker.admit()).toBe('rejected');
    await clock.advance(BREAKER.openMs);
    expect(breaker.admit()).toBe('probe');
    expect(store.peek('m-c')).toBe(2);
    breaker.success();
    breaker.success();
    expect(breaker.state).toBe('CLOSED');
    expect(store.liveSlots).toBe(3); // closed again: its slot is given back
  });
});

describe.each([
  ['memory', () => new MemoryBreakerStore()],
  ['shared', () => new SharedBreakerStore(createSharedBreakerTable(64))],
])('breaker records are forgotten once they no longer matter (%s store)', (_name, makeStore) => {
  const recorded = (store: MemoryBreakerStore | SharedBreakerStore) => (store instanceof MemoryBreakerStore ? store.size : store.liveSlots);

  it('a miner that failed once is recorded no longer than the window: its next success after it drops the record', async () => {
    const clock = new FakeClock();
    const store = makeStore();
    const b = new Breaker(store, 'm1', BREAKER, clock);
    b.failure('MINER_TIMEOUT');
    b.success();
    expect(recorded(store)).toBe(1); // still inside the window: the failure counts
    expect(store.peek('m1')).toBe(HAS_FAILURES);
    await clock.advance(BREAKER.windowMs);
    b.success();
    expect(recorded(store)).toBe(0);
    expect(store.peek('m1')).toBe(0);
  });

  it('a breaker that closes again gives its record back', async () => {
    const clock = new FakeClock();
    const store = makeStore();
    const b = new Breaker(store, 'm1', { ...BREAKER, halfOpenSuccesses: 1 }, clock);
    for (let i = 0; i < 3; i++) b.failure();
    await clock.advance(BREAKER.openMs);
    expect(b.admit()).toBe('probe');
    b.success();
    expect(b.state).toBe('CLOSED');
    expect(recorded(store)).toBe(0);
  });
});

describe('shared breaker table under address churn', () => {
  it('keeps opening breakers for new miners long after more miners than it has slots have failed and gone', async () => {
    // 16 slots; 400 miners in 100 waves of 4: each wave's miners fail until their breakers open,
    // then are never seen again (their addresses moved). Before slots were reclaimed, the 17th
    // miner onwards got no breaker at all (failed open): its failures never opened anything.
    const table = createSharedBreakerTable(16);
    const store = new SharedBreakerStore(table);
    const clock = new FakeClock();
    let opened = 0;
    for (let wave = 0; wave < 100; wave++) {
      for (let m = 0; m < 4; m++) {
        const b = new Breaker(store, `10.${wave}.0.${m}:50051`, BREAKER, clock);
        b.failure('MINER_UNREACHABLE');
        b.failure('MINER_UNREACHABLE');
        if (b.failure('MINER_UNREACHABLE')) opened++;
        expect(b.admit()).toBe('rejected');
      }
      await clock.advance(BREAKER.openMs + BREAKER.probeLeaseMs);
    }
    expect(opened).toBe(400);
    expect(store.liveSlots).toBeLessThanOrEqual(16);
  });

  it('never evicts a breaker that still matters: a full run of recent ones leaves the newcomer without one', () => {
    const table = createSharedBreakerTable(4);
    const store = new SharedBreakerStore(table);
    const clock = new FakeClock();
    for (let m = 0; m < 4; m++) for (let i = 0; i < 3; i++) new Breaker(store, `m${m}`, BREAKER, clock).failure();
    const newcomer = new Breaker(store, 'm-new', BREAKER, clock);
    for (let i = 0; i < 3; i++) newcomer.failure();
    expect(newcomer.state).toBe('CLOSED'); // failed open: no room
    for (let m = 0; m < 4; m++) expect(new Breaker(store, `m${m}`, BREAKER, clock).state).toBe('OPEN');
  });
});

describe('memory breaker store under address churn', () => {
  it('stays bounded: records of miners whose failures left the window are dropped as it grows', async () => {
    const store = new MemoryBreakerStore();
    const clock = new FakeClock();
    for (let wave = 0; wave < 20; wave++) {
      for (let m = 0; m < 1_000; m++) new Breaker(store, `10.${wave}.${m >> 8}.${m & 255}`, BREAKER, clock).failure('MINER_TIMEOUT');
      await clock.advance(BREAKER.windowMs);
    }
    expect(store.size).toBeLessThan(10_000); // 20,000 miners each failed once
  });
});

class FakeClient implements ClientLike {
  closed = false;
  state = grpc.connectivityState.IDLE;
  getChannel() {
    return { getConnectivityState: () => this.state };
  }
  close() {
    this.closed = true;
  }
}

describe('connection pool', () => {
  const poolOpts = parseCoreOptions({ pool: { maxConnections: 2, idleTtlMs: 1_000, unhealthyAfterFailures: 2 } }).pool;
  const target = (key: string) => ({
    key,
    address: key,
    credentials: () => grpc.credentials.createInsecure(),
    channelOptions: () => ({}),
    transport: 'plaintext' as const,
  });
  const setup = () => {
    const clock = new FakeClock();
    const made: FakeClient[] = [];
    const pool = new ConnectionPool(poolOpts, clock, () => {
      const c = new FakeClient();
      made.push(c);
      return c;
    });
    // One call: the channel leased for it, and released when it ends.
    const use = (key: string) => {
      const ch = pool.acquire(target(key));
      pool.release(ch);
      return ch;
    };
    return { clock, made, pool, use };
  };

  it('reuses the channel of the same miner', () => {
    const { pool, made, use } = setup();
    expect(use('a')).toBe(use('a'));
    expect(made.length).toBe(1);
    pool.close();
  });

  it('evicts and closes the least recently used at max size', () => {
    const { pool, made, use } = setup();
    use('a');
    use('b');
    use('a'); // a is now most recent
    use('c');
    expect(pool.has('b')).toBe(false);
    expect(made[1]?.closed).toBe(true);
    expect(made[0]?.closed).toBe(false);
    expect(pool.stats()).toMatchObject({ open: 2, evictions: 1, created: 3 });
    pool.close();
    expect(made.every((c) => c.closed)).toBe(true);
  });

  it('expires idle channels after the TTL; use refreshes it', async () => {
    const { pool, made, clock, use } = setup();
    use('a');
    await clock.advance(800);
    use('a'); // refresh
    await clock.advance(800);
    pool.sweep();
    expect(pool.has('a')).toBe(true);
    await clock.advance(1_001);
    pool.sweep();
    expect(pool.has('a')).toBe(false);
    expect(made[0]?.closed).toBe(true);
    expect(pool.stats().expired).toBe(1);
    pool.close();
  });

  it('rebuilds a channel after the unhealthy threshold and reports states', () => {
    const { pool, made, use } = setup();
    const ch = use('a');
    made[0]!.state = grpc.connectivityState.TRANSIENT_FAILURE;
    expect(pool.stats()).toMatchObject({ failed: 1, ready: 0 });
    pool.reportFailure(ch);
    expect(use('a')).toBe(ch);
    pool.reportFailure(ch);
    const rebuilt = use('a');
    expect(rebuilt).not.toBe(ch);
    expect(made[0]?.closed).toBe(true);
    expect(pool.stats().rebuilt).toBe(1);
    pool.close();
  });

  it('never closes a channel under a call: past max size it evicts only idle ones, and shrinks back as calls end', () => {
    const { pool, made, use } = setup(); // maxConnections 2
    const a = pool.acquire(target('a'));
    const b = pool.acquire(target('b'));
    const c = pool.acquire(target('c')); // three miners called at once: over the limit, nothing closed
    expect(made.map((m) => m.closed)).toEqual([false, false, false]);
    expect(pool.stats()).toMatchObject({ open: 3, evictions: 0 });
    pool.release(b); // idle now, and the pool over its limit: b goes (a is older but busy)
    expect(made.map((m) => m.closed)).toEqual([false, true, false]);
    expect(pool.stats()).toMatchObject({ open: 2, evictions: 1 });
    pool.release(a);
    pool.release(c);
    use('d'); // a is the least recently used idle one
    expect(made.map((m) => m.closed)).toEqual([true, true, false, false]);
    pool.close();
  });

  it('a job holding its miner keeps the channel between its calls, past max size and the TTL; released, it goes as usual', async () => {
    const { pool, made, clock, use } = setup(); // maxConnections 2, TTL 1 s
    const release = pool.hold('a');
    const a = use('a'); // the job's first call…
    use('b');
    use('c');
    use('d'); // …other miners' calls fill the pool past its size: a is the oldest, but held
    expect(pool.has('a')).toBe(true);
    expect(made[0]?.closed).toBe(false);
    await clock.advance(1_500);
    pool.sweep(); // d expires, a does not
    expect(pool.has('d')).toBe(false);
    expect(use('a')).toBe(a); // the job's next call, on the same connection
    release();
    release(); // twice is once
    use('e');
    use('f'); // a is now the least recently used idle one
    expect(pool.has('a')).toBe(false);
    expect(made[0]?.closed).toBe(true);
    // Two jobs of one miner: the channel stays until both are done.
    const [r1, r2] = [pool.hold('g'), pool.hold('g')];
    use('g');
    use('h');
    r1();
    use('i');
    expect(pool.has('g')).toBe(true);
    r2();
    use('j');
    expect(pool.has('g')).toBe(false);
    pool.close();
  });

  it('a channel retired while in use (unhealthy, expired) serves its calls to the end, then closes', async () => {
    const { pool, made, clock, use } = setup();
    const ch = pool.acquire(target('a')); // a call in flight…
    pool.reportFailure(ch);
    pool.reportFailure(ch);
    const fresh = use('a'); // …while the next one gets a new channel
    expect(fresh).not.toBe(ch);
    expect(made[0]?.closed).toBe(false);
    pool.release(ch);
    expect(made[0]?.closed).toBe(true);
    // A long stream holds its channel past the idle TTL: the sweep leaves it; a later call retires it.
    const stream = pool.acquire(target('s'));
    await clock.advance(1_500);
    pool.sweep();
    expect(pool.has('s')).toBe(true);
    expect(use('s')).not.toBe(stream);
    expect(made[2]?.closed).toBe(false);
    pool.release(stream);
    expect(made[2]?.closed).toBe(true);
    pool.close();
  });
});

describe('grpc target', () => {
  it('sends IP literals to the ip resolver and hostnames to DNS', () => {
    expect(grpcTarget('10.1.2.3', 50051)).toBe('ipv4:10.1.2.3:50051');
    expect(grpcTarget('fd00::17', 50051)).toBe('ipv6:[fd00::17]:50051');
    expect(grpcTarget('miner-17.site-a.example', 50052)).toBe('miner-17.site-a.example:50052');
    expect(grpcTarget('localhost', 50051)).toBe('localhost:50051');
  });
});

describe('core options', () => {
  it('fills documented defaults and names a bad option with its value', () => {
    expect(parseCoreOptions().connectTimeoutMs).toBe(3_000);
    expect(parseCoreOptions().retry.maxAttempts).toBe(3);
    expect(() => parseCoreOptions({ connectTimeoutMs: -5 })).toThrow(/options\.connectTimeoutMs .*\(got -5\)/);
    expect(() => parseCoreOptions({ pool: { keepaliveTimeMs: 10_000 } })).toThrow(/options\.pool\.keepaliveTimeMs .*10000/);
    expect(() => parseCoreOptions({ bogus: 1 } as never)).toThrow(/options/);
  });
});

describe('per-miner state of a long-running thread', () => {
  it('forgets sessions idle past sessionIdleMs and expired API versions, keeps what is in use', async () => {
    const clock = new FakeClock();
    const core = new FleetCore({ sessionIdleMs: 3_600_000, versionCacheTtlMs: 600_000 }, { clock });
    try {
      for (let m = 0; m < 100; m++) {
        await core.sessions.token(`gone-${m}`, async () => `t${m}`);
        core.rememberVersion(`gone-${m}`, { major: 1, minor: 0, patch: 0 });
        core.markUnsupported(`gone-${m}`, 'GetErrors');
      }
      await core.sessions.token('busy', async () => 'tb');
      expect(core.minerStateCounts).toEqual({ sessions: 101, versions: 100, unsupported: 100 });
      for (let minute = 0; minute < 61; minute++) {
        await clock.advance(60_000);
        expect(core.sessions.cached('busy')).toBe('tb'); // polled every minute: never idle
        core.sweepMinerState();
      }
      expect(core.minerStateCounts).toEqual({ sessions: 1, versions: 0, unsupported: 0 });
      expect(core.sessions.cached('gone-1')).toBeUndefined(); // the next call logs in again
    } finally {
      core.close();
    }
  });

  it('keeps a session whose login is still in flight', async () => {
    const clock = new FakeClock();
    const core = new FleetCore({}, { clock });
    try {
      let finish: (t: string) => void = () => undefined;
      const pending = core.sessions.token('slow', () => new Promise<string>((r) => (finish = r)));
      await clock.advance(7_200_000);
      core.sweepMinerState();
      finish('ts');
      expect(await pending).toBe('ts');
      expect(core.sessions.cached('slow')).toBe('ts');
    } finally {
      core.close();
    }
  });
});

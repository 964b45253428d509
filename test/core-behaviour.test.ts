// The core's contracts against the simulator: sessions, version skew, reuse, retries, breaker, streams.
import dns from 'node:dns';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { FleetError, minerStatusStream, type FleetCore } from '../src/core/index.js';
import { SimFleet } from '../src/sim/fleet.js';
import { freePort } from '../src/redis/server.js';
import { namedMiners, simTarget, testCore } from './helpers/core.js';

const NAMES = ['expiry', 'concurrent', 'old', 'skew', 'reuse', 'invalid', 'breaker', 'hang-write', 'reboot-refused', 'stream', 'dropper', 'frozen', 'refused-login', 'window'] as const;
const { host, specs } = namedMiners(NAMES, '127.6.0.1');
let fleet: SimFleet;
let core: FleetCore;

beforeAll(async () => {
  fleet = await SimFleet.start({
    miners: specs((id) => (id === 'expiry' ? { tokenExpiry: { ttlMs: 200 } } : id === 'old' ? { oldApi: true } : id === 'dropper' ? { dropStream: { afterMessages: 1 } } : id === 'refused-login' ? { badAuth: true } : {})),
    rebootDownMs: 400,
  });
});
afterAll(() => fleet.close());
afterEach(() => core?.close());

describe('sessions', () => {
  it('an expired token costs exactly one re-login, then the call succeeds', async () => {
    core = testCore();
    const m = core.miner(simTarget('expiry', host('expiry')));
    await m.getMinerDetails();
    await new Promise((r) => setTimeout(r, 300));
    const details = await m.getMinerDetails();
    expect(details.hostname).toMatch(/^miner-/);
    expect(m.stats.logins).toBe(2);
    expect((await fleet.callCounts('expiry'))['Login']).toBe(2);
  });

  it('concurrent calls to one miner share a single login', async () => {
    core = testCore();
    await Promise.all(Array.from({ length: 20 }, () => core.miner(simTarget('concurrent', host('concurrent'))).getMinerStats()));
    expect((await fleet.callCounts('concurrent'))['Login']).toBe(1);
  });
});

describe('version skew', () => {
  it('API 1.0.0: the header token works and GetErrors is UNSUPPORTED_BY_FIRMWARE with no call sent', async () => {
    core = testCore();
    const m = core.miner(simTarget('old', host('old')));
    expect((await m.getMinerDetails()).hostname).toMatch(/^miner-/);
    expect(await m.apiVersion()).toEqual({ major: 1, minor: 0, patch: 0 });
    const err = await m.getErrors().catch((e: unknown) => FleetError.from(e));
    expect(err).toMatchObject({ code: 'UNSUPPORTED_BY_FIRMWARE', context: { attempts: 0, mayHaveReachedMiner: false } });
    await expect(m.setPoolGroups([])).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_FIRMWARE' });
    const counts = await fleet.callCounts('old');
    expect(counts['GetErrors'] ?? 0).toBe(0);
    expect(counts['SetPoolGroups'] ?? 0).toBe(0);
    expect(counts['GetApiVersion']).toBe(1);
  });

  it('an UNIMPLEMENTED answer maps to UNSUPPORTED_BY_FIRMWARE and is not sent again', async () => {
    core = testCore();
    const m = core.miner(simTarget('skew', host('skew')));
    await m.apiVersion(); // 1.11 cached
    await fleet.setFaults('skew', { oldApi: true }); // firmware downgraded behind our back
    await expect(m.getErrors()).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_FIRMWARE', context: { attempts: 1 } });
    await expect(m.getErrors()).rejects.toMatchObject({ code: 'UNSUPPORTED_BY_FIRMWARE', context: { attempts: 0 } });
    expect((await fleet.callCounts('skew'))['GetErrors']).toBe(1);
  });
});

describe('pool and retries', () => {
  it('reuses one channel for the same miner', async () => {
    core = testCore();
    for (let i = 0; i < 5; i++) await core.miner(simTarget('reuse', host('reuse'))).getMinerStats();
    expect(core.pool.stats()).toMatchObject({ open: 1, created: 1, ready: 1 });
  });

  it('a pool smaller than the miners called at once closes no channel under a call, then shrinks back', async () => {
    core = testCore({ pool: { maxConnections: 1 } });
    const plain = (['reuse', 'concurrent', 'invalid', 'skew'] as const).map((n) => core.miner(simTarget(n, host(n))));
    // Every miner's calls interleave: each new channel pushes the pool past its limit while the
    // others' calls are still in flight (before, those were closed under them: "Channel has been shut down").
    const results = await Promise.allSettled(plain.flatMap((m) => [m.getMinerStats(), m.getMinerDetails(), m.getTunerState(), m.getHashboards()]));
    expect(results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason))).toEqual([]);
    expect(core.pool.stats()).toMatchObject({ open: 1, inUse: 0 });
  });

  it('a miner named by hostname is reached through DNS (IP literals skip the resolver), with no TXT service-config query', async () => {
    const port = await freePort();
    const named = await SimFleet.start({ miners: [{ id: 'named', index: 0, host: 'localhost', port, faults: {} }] });
    const txt = vi.spyOn(dns.promises, 'resolveTxt');
    try {
      core = testCore();
      const stats = await core.miner(simTarget('named', 'localhost', port)).getMinerStats();
      expect(stats).toBeDefined();
      expect((await named.callCounts('named'))['GetMinerStats']).toBe(1);
      expect(txt).not.toHaveBeenCalled();
    } finally {
      txt.mockRestore();
      await named.close();
    }
  });

  it('INVALID_ARGUMENT is not retried and does not count against the miner', async () => {
    core = testCore({ breaker: { failureThreshold: 1 } });
    const m = core.miner(simTarget('invalid', host('invalid')));
    await expect(m.setPowerTarget(1)).rejects.toMatchObject({ code: 'INVALID_REQUEST', context: { attempts: 1 } });
    expect(core.breaker(m.key).state).toBe('CLOSED');
    const recs = await fleet.mutations('invalid');
    expect(recs.map((r) => r.result)).toEqual(['rejected']);
  });

  it('the breaker opens after repeated miner failures and then fails fast with no traffic', async () => {
    core = testCore({ breaker: { failureThreshold: 3, openMs: 60_000 } });
    const m = core.miner(simTarget('breaker', host('breaker')));
    await m.getMinerStats(); // logged in, version known
    await fleet.setFaults('breaker', { overloaded: true });
    await expect(m.getMinerStats()).rejects.toMatchObject({ code: 'MINER_OVERLOADED', context: { attempts: 3 } });
    const before = await fleet.callCounts('breaker');
    await expect(m.getMinerStats()).rejects.toMatchObject({ code: 'CIRCUIT_OPEN' });
    expect(await fleet.callCounts('breaker')).toEqual(before);
  });

  it('a write that timed out after it was sent is OUTCOME_UNKNOWN and not retried', async () => {
    core = testCore();
    const m = core.miner(simTarget('hang-write', host('hang-write')));
    await m.getMinerDetails();
    await fleet.setFaults('hang-write', { hang: true });
    await expect(m.setPowerTarget(2000)).rejects.toMatchObject({ code: 'OUTCOME_UNKNOWN', context: { attempts: 1, mayHaveReachedMiner: true } });
  });

  it('a write whose window has closed is never sent (CANCELLED, writeWindowClosed); within it, its deadline ends with the window', async () => {
    core = testCore({ mutationTimeoutMs: 10_000, callBudgetMs: 10_000 });
    const m = core.miner(simTarget('window', host('window')));
    await m.getMinerDetails();
    const before = await fleet.callCounts('window');
    const closed = { writeNotAfterMs: Date.now() - 1 };
    await expect(m.setPowerTarget(2000, closed)).rejects.toMatchObject({ code: 'CANCELLED', retryable: false, context: { attempts: 1, mayHaveReachedMiner: false, writeWindowClosed: true } });
    expect((await m.getMinerDetails(closed)).macAddress).toBeTruthy(); // reads are not held to it
    expect(await fleet.callCounts('window')).toEqual({ ...before, GetMinerDetails: (before['GetMinerDetails'] ?? 0) + 1 });
    expect(await fleet.mutations('window')).toEqual([]);
    // A write sent with 300 ms of its window left times out then, not after its 10 s.
    await fleet.setFaults('window', { hang: true });
    const started = Date.now();
    await expect(m.setPowerTarget(2000, { writeNotAfterMs: Date.now() + 300 })).rejects.toMatchObject({ code: 'OUTCOME_UNKNOWN', context: { mayHaveReachedMiner: true } });
    expect(Date.now() - started).toBeLessThan(2_000);
    await fleet.setFaults('window', {});
  });

  it('an abort signal cancels a call in flight at once, without waiting for its deadline', async () => {
    core = testCore();
    const m = core.miner(simTarget('hang-write', host('hang-write')));
    await fleet.setFaults('hang-write', {});
    await m.getMinerDetails();
    await fleet.setFaults('hang-write', { hang: true });
    const ac = new AbortController();
    const started = Date.now();
    setTimeout(() => ac.abort(), 100);
    await expect(m.getMinerStats({ signal: ac.signal, timeoutMs: 5_000 })).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(Date.now() - started).toBeLessThan(2_000);
    await fleet.setFaults('hang-write', {});
  });

  it('a non-idempotent Reboot is retried only while the miner provably never got it', async () => {
    core = testCore();
    const m = core.miner(simTarget('reboot-refused', host('reboot-refused')));
    await m.getMinerDetails();
    await fleet.setFaults('reboot-refused', { refuse: true });
    await new Promise((r) => setTimeout(r, 100)); // let the client notice its connection is gone
    await expect(m.reboot()).rejects.toMatchObject({ code: 'MINER_UNREACHABLE', context: { attempts: 3, mayHaveReachedMiner: false } });
    expect(await fleet.mutations('reboot-refused')).toEqual([]);
  });
});

describe('status stream', () => {
  it('yields status changes and survives a miner restart by resubscribing', async () => {
    core = testCore({ stream: { reconnectBaseDelayMs: 100, reconnectMaxDelayMs: 300, maxReconnects: 20 } });
    const m = core.miner(simTarget('stream', host('stream')));
    const ac = new AbortController();
    const seen: { status: string; subscription: number }[] = [];
    const done = (async () => {
      for await (const u of minerStatusStream(core, m, { signal: ac.signal })) {
        seen.push(u);
        if (seen.length === 1) await core.miner(simTarget('stream', host('stream'))).pauseMining();
        if (seen.length === 2) await fleet.reboot('stream', 400);
        if (u.subscription > 1) ac.abort();
      }
    })();
    await done;
    expect(seen[0]).toEqual({ status: 'MINER_STATUS_NORMAL', subscription: 1 });
    expect(seen[1]).toEqual({ status: 'MINER_STATUS_PAUSED', subscription: 1 });
    expect(seen.at(-1)?.subscription).toBeGreaterThan(1);
    expect(core.pool.stats().inUse).toBe(0); // every subscription gave its channel back
  });

  it('gives up with CONNECTION_LOST after maxReconnects drops in a row', async () => {
    core = testCore({ stream: { reconnectBaseDelayMs: 10, reconnectMaxDelayMs: 20, maxReconnects: 2 } });
    const m = core.miner(simTarget('dropper', host('dropper')));
    let messages = 0;
    const err = await (async () => {
      for await (const _ of minerStatusStream(core, m)) messages++;
    })().catch((e: unknown) => FleetError.from(e));
    expect(err).toMatchObject({ code: 'CONNECTION_LOST' });
    expect(messages).toBe(3); // one message per subscription: the first and two reconnects
    expect(core.pool.stats().inUse).toBe(0);
  });

  it('a subscription answered by no first status (a frozen miner) is tried again, not waited on for ever', async () => {
    core = testCore({ stream: { reconnectBaseDelayMs: 20, reconnectMaxDelayMs: 50 } });
    const miner = core.miner(simTarget('frozen', host('frozen')));
    try {
      await miner.token(); // logged in before the freeze: only the subscription itself hangs
      await fleet.setFaults('frozen', { hang: true });
      const started = Date.now();
      const err = await (async () => {
        for await (const _ of minerStatusStream(core, miner, { maxReconnects: 1 }));
      })().catch((e: unknown) => FleetError.from(e));
      expect(err).toMatchObject({ code: 'MINER_TIMEOUT', message: 'no status within 600 ms of subscribing' });
      expect(Date.now() - started).toBeLessThan(3_000); // two subscriptions of 600 ms, and a backoff
      expect(core.pool.stats().inUse).toBe(0);
    } finally {
      await fleet.setFaults('frozen', {});
    }
  });

  it('a refused login ends the stream at once, whatever maxReconnects allows (retrying only locks the account sooner)', async () => {
    core = testCore();
    const err = await (async () => {
      for await (const _ of minerStatusStream(core, core.miner(simTarget('refused-login', host('refused-login'))), { maxReconnects: Infinity }));
    })().catch((e: unknown) => FleetError.from(e));
    expect(err).toMatchObject({ code: 'MINER_AUTH_FAILED', context: { attempts: 1 } });
    expect((await fleet.callCounts('refused-login'))['Login']).toBe(1);
  });

  it('return() releases the call (no stream left open on the miner)', async () => {
    core = testCore();
    const m = core.miner(simTarget('stream', host('stream')));
    const it = minerStatusStream(core, m)[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);
    expect(core.pool.stats().inUse).toBe(1); // the stream holds its channel
    await it.return(undefined);
    expect((await it.next()).done).toBe(true);
    expect(core.pool.stats().inUse).toBe(0);
  });
});

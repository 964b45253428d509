// Writes made safe to run twice: ioredis sends a command again on a new connection when the old one
// dropped before its reply (here a proxy cuts the connection under that one reply), and a schedule's
// tick can be delivered twice. The second run changes nothing more and answers as the first did: one
// audit entry, one count, a move or a create that says it was made, a lock that is held.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendAudit, auditKey, readAudit } from '../src/rollout/audit.js';
import { changeRolloutState } from '../src/rollout/create.js';
import { RolloutStore } from '../src/rollout/store.js';
import { startLockKey, withStartLock } from '../src/rollout/start-lock.js';
import { RunStore } from '../src/fleet/run-store.js';
import { countTick } from '../src/rollout/schedule-ticks.js';
import { tickKey, tickState } from '../src/rollout/schedules.js';
import { redisUrl, startHoldingProxy, uniquePrefix, type HoldingProxy } from './helpers/redis.js';

let redis: Redis;
beforeAll(() => {
  redis = new Redis(redisUrl(), { maxRetriesPerRequest: null });
});
afterAll(() => redis.disconnect());

/** Runs `write` over a connection through a proxy that cuts it once Redis has run the write's command, before its reply. */
async function withReplyLost<T>(text: string, write: (client: Redis) => Promise<T>): Promise<T> {
  const proxy: HoldingProxy = await startHoldingProxy(Number(new URL(redisUrl()).port), text);
  const client = new Redis(proxy.url, { maxRetriesPerRequest: null });
  try {
    const written = write(client);
    await proxy.seen;
    await new Promise((r) => setTimeout(r, 200)); // it ran in Redis; its reply is held
    proxy.cut();
    return await written;
  } finally {
    client.disconnect();
    await proxy.close();
  }
}

describe('a write whose reply was lost with its connection', () => {
  it('an audit entry sent again by ioredis is in the log once', async () => {
    const prefix = uniquePrefix('resent-audit');
    const action = `test.resent-${prefix}`;
    await withReplyLost(action, (client) => appendAudit(client, { actor: 'test', action, subject: 'sch-1' }, prefix));
    const entries = await readAudit(redis, prefix);
    expect(entries.map((e) => e.action)).toEqual([action]);
    await redis.del(auditKey(prefix));
  });

  it("a tick's count sent again by ioredis counts the tick once", async () => {
    const prefix = uniquePrefix('resent-tick');
    const reason = `busy-${prefix}`;
    await withReplyLost(reason, (client) => countTick(client, prefix, 'sch-1', 'skipped', '1700000000000', new Date().toISOString(), reason));
    expect(await tickState(redis, prefix, 'sch-1')).toMatchObject({ skipped: 1, skippedReason: reason });
    await redis.del(tickKey(prefix, 'sch-1'));
  });
});

describe('a tick counted twice', () => {
  it('a tick delivered again counts once; other ticks count; the ticks kept to know it stay bounded', async () => {
    const prefix = uniquePrefix('tick-twice');
    const at = new Date().toISOString();
    expect(await countTick(redis, prefix, 'sch-1', 'failed', '1000', at, 'Redis full')).toBe(true);
    expect(await countTick(redis, prefix, 'sch-1', 'failed', '1000', at, 'Redis full')).toBe(false);
    // The other counter keeps its own ticks: a tick skipped, then failed, is counted as each.
    expect(await countTick(redis, prefix, 'sch-1', 'skipped', '1000', at, 'busy')).toBe(true);
    for (let t = 2_000; t < 42_000; t += 1_000) expect(await countTick(redis, prefix, 'sch-1', 'failed', String(t), at, `failed ${t}`)).toBe(true);
    // The newest are still known; the list of ticks known has a bound.
    expect(await countTick(redis, prefix, 'sch-1', 'failed', '41000', at, 'again')).toBe(false);
    expect(await tickState(redis, prefix, 'sch-1')).toMatchObject({ failed: 41, failedReason: 'failed 41000', skipped: 1, skippedReason: 'busy' });
    const kept = (await redis.hget(tickKey(prefix, 'sch-1'), 'failedTicks'))?.split(' ') ?? [];
    expect(kept.length).toBe(32);
    expect(kept.at(-1)).toBe('41000');
    expect(kept[0]).toBe('10000');
    await redis.del(tickKey(prefix, 'sch-1'));
  });
});

describe("a rollout's move whose reply was lost with its connection", () => {
  const record = (rolloutId: string) => ({
    rolloutId,
    operation: 'power-target' as const,
    spec: { kind: 'power-target' as const, watts: 3_000 },
    targets: [{ minerId: 'm1', host: '127.0.0.1', port: 50051, site: 's', tags: [], credentials: 'default' }],
    inventoryDigest: 'd',
    waves: [1],
    waveEnds: [1],
    maxFailureRate: 0.1,
    minSample: 1,
    pauseBetweenMs: 0,
    startAtMs: Date.now(),
    createdAt: new Date().toISOString(),
    actor: 'test',
  });

  it('an abort sent again by ioredis is the abort it made, not "is aborted: cannot abort it"', async () => {
    const prefix = uniquePrefix('resent-abort');
    const store = new RolloutStore(redis, prefix);
    expect(await store.create(record('ro-1'), 'paused')).toBe(true);
    const reason = `night shift ${prefix}`;
    const state = await withReplyLost(reason, (client) => changeRolloutState(client, 'ro-1', 'abort', 'test', prefix, reason));
    expect(state).toBe('aborted');
    expect(await store.status('ro-1')).toMatchObject({ state: 'aborted', reason });
    expect((await readAudit(redis, prefix, 200, 'ro-1')).map((e) => e.action)).toEqual(['rollout.abort']);
    // Another move from a state it is not in is still refused.
    await expect(changeRolloutState(redis, 'ro-1', 'pause', 'test', prefix)).rejects.toThrow('rollout ro-1 is aborted: cannot pause it');
  });

  it('the wave held while paused, taken by a resume whose reply was lost, is still the resume\'s', async () => {
    const prefix = uniquePrefix('resent-held');
    const store = new RolloutStore(redis, prefix);
    expect(await store.create(record('ro-2'), 'paused')).toBe(true);
    expect(await store.holdWave('ro-2', 1)).toBe(true);
    // The take's script is told apart by its key (only it runs on this connection with it).
    expect(await withReplyLost('heldWave', (client) => new RolloutStore(client, prefix).takeHeldWave('ro-2'))).toBe(1);
    expect(await store.takeHeldWave('ro-2')).toBeUndefined();
  });
});

describe('a create or a lock whose reply was lost with its connection', () => {
  it('a run created by a command sent again is created, and listed', async () => {
    const prefix = uniquePrefix('resent-run');
    const store = new RunStore(redis, prefix);
    const record = { runId: `run-${prefix}`, operation: 'poll', params: {}, inventoryFile: 'farm.csv', inventoryDigest: 'd', createdAt: new Date().toISOString(), createdAtMs: Date.now(), total: 1 };
    const made = await withReplyLost(record.runId, (client) => new RunStore(client, prefix).createRun(record));
    expect(made.created).toBe(true);
    expect((await store.listRuns()).map((r) => r.runId)).toEqual([record.runId]);
    expect((await store.createRun(record)).created).toBe(false);
    await store.deleteRuns([record.runId]);
  });

  it('an outcome written by a command sent again is written (a cancel counts it), and counted once', async () => {
    const prefix = uniquePrefix('resent-outcome');
    const store = new RunStore(redis, prefix);
    const runId = `run-${prefix}`;
    const outcome = { runId, minerId: `m-${prefix}`, host: '127.0.0.1', port: 50051, operation: 'poll', status: 'failed' as const, code: 'CANCELLED' as const, attempts: 0, jobAttempts: 0, durationMs: 0, finishedAt: new Date().toISOString(), transport: 'plaintext' as const };
    expect(await withReplyLost(outcome.minerId, (client) => new RunStore(client, prefix).writeOutcome(outcome))).toBe(true);
    expect(await store.getCounts(runId)).toMatchObject({ done: 1, counts: { CANCELLED: 1 } });
    // Another outcome for the miner is still refused.
    expect(await store.writeOutcome({ ...outcome, finishedAt: new Date(Date.now() + 1).toISOString() })).toBe(false);
    await store.deleteRuns([runId]);
  });

  it("the rollout start lock a SET took before its reply was lost is the start's, not waited out", async () => {
    const prefix = uniquePrefix('resent-lock');
    // Without the look, the start waits for the lock it holds until its wait (here 2 s) runs out.
    const held = await withReplyLost(startLockKey(prefix), (client) => withStartLock(client, prefix, async () => 'started', 2_000));
    expect(held).toBe('started');
    expect(await redis.exists(startLockKey(prefix))).toBe(0);
  });
});

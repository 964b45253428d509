// Writes that are not idempotent by themselves (an audit entry, a tick's count), made so: ioredis sends
// a command again on a new connection when the old one dropped before its reply, and a tick can be
// delivered twice. One audit entry and one count each, not two.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendAudit, auditKey, readAudit } from '../src/rollout/audit.js';
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

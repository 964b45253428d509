// Finished poll runs beyond the retention policy are deleted from Redis; runs in progress and runs of
// changes (which a rollback reads) never are.
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import type { Outcome } from '../src/fleet/outcome.js';
import { RunStore, type RunRecord } from '../src/fleet/run-store.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';

const redis = new Redis(redisUrl());
afterAll(() => redis.disconnect());

const HOUR = 3_600_000;
const NOW = Date.UTC(2026, 10, 30, 12);

async function run(store: RunStore, runId: string, operation: string, ageMs: number, finished: boolean): Promise<void> {
  const createdAtMs = NOW - ageMs;
  const record: RunRecord = { runId, operation, params: {}, inventoryFile: 'farm.csv', inventoryDigest: 'd', createdAt: new Date(createdAtMs).toISOString(), createdAtMs, total: 2 };
  await store.createRun(record);
  for (const minerId of finished ? ['m1', 'm2'] : ['m1']) {
    const o: Outcome = { runId, minerId, host: '127.0.0.1', port: 50051, operation, status: 'ok', code: 'OK', attempts: 1, jobAttempts: 1, durationMs: 5, finishedAt: new Date(createdAtMs + 1_000).toISOString(), transport: 'plaintext' };
    await store.writeOutcome(o);
  }
}

async function fleetOf(store: RunStore): Promise<string[]> {
  return (await store.listRuns(100)).map((r) => r.runId).sort();
}

describe('RunStore.pruneRuns', () => {
  it('keeps the newest N finished poll runs, every run in progress and every run of a change', async () => {
    const prefix = uniquePrefix('keep');
    const store = new RunStore(redis, prefix);
    await run(store, 'poll-1', 'poll', 6 * HOUR, true);
    await run(store, 'poll-2', 'poll', 5 * HOUR, false); // never finished (interrupted, no worker yet)
    await run(store, 'change-3', 'set-power-target', 4 * HOUR, true);
    await run(store, 'poll-4', 'poll', 3 * HOUR, true);
    await run(store, 'poll-5', 'poll', 2 * HOUR, true);
    await run(store, 'poll-6', 'poll', 1 * HOUR, true);
    const deleted = await store.pruneRuns({ keepRuns: 2, keepForMs: 30 * 24 * HOUR }, NOW);
    expect(deleted.sort()).toEqual(['poll-1', 'poll-4']);
    expect(await fleetOf(store)).toEqual(['change-3', 'poll-2', 'poll-5', 'poll-6']);
    // Their record, outcomes and counts are gone; the others' are untouched.
    for (const id of deleted) expect(await redis.exists(store.k.run(id), store.k.outcomes(id), store.k.counts(id))).toBe(0);
    expect((await store.getCounts('poll-5')).done).toBe(2);
    expect(await store.getOutcome('change-3', 'm1')).toBeDefined();
    expect(await store.pruneRuns({ keepRuns: 2, keepForMs: 30 * 24 * HOUR }, NOW)).toEqual([]);
  });

  it('deletes finished poll runs older than keepFor', async () => {
    const prefix = uniquePrefix('age');
    const store = new RunStore(redis, prefix);
    await run(store, 'old', 'poll', 26 * HOUR, true);
    await run(store, 'old-unfinished', 'poll', 25 * HOUR, false);
    await run(store, 'recent', 'poll', 2 * HOUR, true);
    expect(await store.pruneRuns({ keepRuns: 20, keepForMs: 24 * HOUR }, NOW)).toEqual(['old']);
    expect(await fleetOf(store)).toEqual(['old-unfinished', 'recent']);
  });
});

// Finished poll runs beyond the retention policy are deleted from Redis; runs in progress and runs of
// changes (which a rollback reads) never are.
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import type { Outcome } from '../src/fleet/outcome.js';
import { RunStore, type RunRecord } from '../src/fleet/run-store.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';
import { pruneScheduleRollouts } from '../src/rollout/retention.js';
import { RolloutStore, type RolloutRecord, type RolloutState } from '../src/rollout/store.js';

const redis = new Redis(redisUrl());
afterAll(() => redis.disconnect());

const HOUR = 3_600_000;
const NOW = Date.UTC(2026, 10, 30, 12);

async function run(store: RunStore, runId: string, operation: string, ageMs: number, finished: boolean, more: Partial<RunRecord> = {}): Promise<void> {
  const createdAtMs = NOW - ageMs;
  const record: RunRecord = { runId, operation, params: {}, inventoryFile: 'farm.csv', inventoryDigest: 'd', createdAt: new Date(createdAtMs).toISOString(), createdAtMs, total: 2, ...more };
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

  it("each series keeps its own runs: a schedule's --keep-runs never deletes another schedule's runs or the operator's own polls", async () => {
    const prefix = uniquePrefix('series');
    const store = new RunStore(redis, prefix);
    const everyMinute = { series: 'sch-minute', retention: { keepRuns: 2, keepForMs: 30 * 24 * HOUR } };
    const nightly = { series: 'sch-nightly', retention: { keepRuns: 1, keepForMs: 30 * 24 * HOUR } };
    await run(store, 'manual-1', 'poll', 10 * HOUR, true); // `bos-fleet poll` this morning
    await run(store, 'nightly-1', 'poll', 9 * HOUR, true, nightly);
    await run(store, 'nightly-2', 'poll', 8 * HOUR, true, nightly);
    for (let m = 5; m >= 1; m--) await run(store, `minute-${m}`, 'poll', m * 60_000, true, everyMinute);
    // The every-minute schedule's tick prunes: its own beyond 2, the nightly one's beyond its own 1, no manual poll.
    expect((await store.pruneRuns(everyMinute.retention, NOW, 'sch-minute')).sort()).toEqual(['minute-3', 'minute-4', 'minute-5', 'nightly-1']);
    expect(await fleetOf(store)).toEqual(['manual-1', 'minute-1', 'minute-2', 'nightly-2']);
    // An operator's own poll with --keep-runs 1 prunes only the operator's polls beyond 1.
    await run(store, 'manual-2', 'poll', 0, true);
    expect(await store.pruneRuns({ keepRuns: 1, keepForMs: 30 * 24 * HOUR }, NOW)).toEqual(['manual-1']);
    expect(await fleetOf(store)).toEqual(['manual-2', 'minute-1', 'minute-2', 'nightly-2']);
    // A series' age limit is its own too (a removed schedule's runs still go after its keepFor).
    await run(store, 'gone-1', 'poll', 3 * 24 * HOUR, true, { series: 'sch-removed', retention: { keepRuns: 20, keepForMs: 24 * HOUR } });
    expect(await store.pruneRuns({ keepRuns: 20, keepForMs: 30 * 24 * HOUR }, NOW)).toEqual(['gone-1']);
  });
});

describe('pruneScheduleRollouts', () => {
  it("deletes a schedule's finished rollouts beyond its numbers; keeps unfinished, failed and still-settling ones, and other schedules'", async () => {
    const prefix = uniquePrefix('ro-keep');
    const store = new RunStore(redis, prefix);
    const rollouts = new RolloutStore(redis, prefix);
    const target = { minerId: 'm1', host: '127.0.0.1', port: 50051, site: 's', tags: [], credentials: 'default' };
    const rollout = async (id: string, state: RolloutState, settled = true) => {
      const rec: RolloutRecord = { rolloutId: id, operation: 'power-target', spec: { kind: 'power-target', watts: 2000 }, targets: [target], inventoryDigest: 'd', waveEnds: [1], waves: [1], maxFailureRate: 0.05, minSample: 10, pauseBetweenMs: 0, startAtMs: 0, createdAt: '', actor: 'schedule:s' };
      await rollouts.create(rec, state);
      await run(store, `${id}-w0`, 'power-target', 0, settled); // settled: every miner has an outcome
    };
    const tick = (hoursAgo: number) => NOW - hoursAgo * HOUR;
    await rollout(`night-${tick(9)}`, 'completed');
    await rollout(`night-${tick(8)}`, 'failed'); // waits for resume or abort
    await rollout(`night-${tick(7)}`, 'aborted', false); // its miners being changed still finish
    await rollout(`night-${tick(6)}`, 'halted');
    await rollout(`night-${tick(5)}`, 'completed');
    await rollout(`night-${tick(4)}`, 'paused');
    await rollout(`night-${tick(3)}`, 'completed');
    await rollout(`nightly-${tick(10)}`, 'completed'); // another schedule's
    await rollout(`ro-20261130T020000Z-abcdef`, 'completed'); // by hand
    const deleted = await pruneScheduleRollouts(redis, prefix, 'night', { keepRuns: 2, keepForMs: 30 * 24 * HOUR }, NOW);
    expect(deleted.sort()).toEqual([`night-${tick(5)}`, `night-${tick(6)}`, `night-${tick(9)}`].sort());
    for (const id of deleted) {
      expect(await rollouts.get(id)).toBeUndefined();
      expect(await redis.exists(store.k.run(`${id}-w0`), store.k.outcomes(`${id}-w0`), store.k.counts(`${id}-w0`))).toBe(0);
    }
    expect((await rollouts.listAll()).sort()).toEqual([`night-${tick(3)}`, `night-${tick(4)}`, `night-${tick(7)}`, `night-${tick(8)}`, `nightly-${tick(10)}`, 'ro-20261130T020000Z-abcdef'].sort());
    // By age: the newest finished one goes once it is older than keepFor.
    expect(await pruneScheduleRollouts(redis, prefix, 'night', { keepRuns: 20, keepForMs: 2 * HOUR }, NOW)).toEqual([`night-${tick(3)}`]);
  });
});


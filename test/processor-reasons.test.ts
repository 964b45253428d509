// How a retried job attempt's failure is handed to the next attempt (BullMQ's failedReason), and how an
// attempt skipped by an open breaker reports that earlier failure instead of its own zero.
import { DelayedError } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError } from '../src/core/fleet-error.js';
import type { ErrorCode } from '../src/core/error-codes.js';
import type { JobData } from '../src/fleet/job.js';
import { RunStore } from '../src/fleet/run-store.js';
import { lockHold, runChange, TakenOverError } from '../src/workers/change-job.js';
import { retryReason, withEarlierCause } from '../src/workers/processor.js';
import type { TaskInput, TaskResult } from '../src/workers/task.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';

function failed(code: ErrorCode, message: string, attempts: number, durationMs: number): TaskResult {
  return { ok: false, code, attempts, durationMs, transport: 'plaintext', error: new FleetError(code, message).toPlain() };
}

const skipped = failed('CIRCUIT_OPEN', 'circuit open for miner-1: recent calls kept failing', 1, 0);

describe('retried job attempts', () => {
  it('a skipped attempt reports the earlier failure: code, message, in-call attempts, time, suggestion', () => {
    const reason = retryReason(failed('MINER_TIMEOUT', 'no connection to 10.0.0.1:50051 within 3000 ms', 3, 9_120));
    expect(reason).toBe('MINER_TIMEOUT: no connection to 10.0.0.1:50051 within 3000 ms [3 in-call attempts, 9120 ms]');
    const r = withEarlierCause(skipped, reason);
    expect(r).toMatchObject({ ok: false, code: 'MINER_TIMEOUT', attempts: 3, durationMs: 9_120 });
    expect(r.error).toMatchObject({ code: 'MINER_TIMEOUT', retryable: true, message: 'no connection to 10.0.0.1:50051 within 3000 ms (next attempt skipped: circuit open)' });
    expect(r.error?.suggestion).toMatch(/did not answer in time/);
  });

  it('a chain of skipped attempts keeps handing on the first real failure, said once', () => {
    const first = retryReason(failed('MINER_UNREACHABLE', 'connect ECONNREFUSED 10.0.0.2:50051', 1, 4));
    const second = retryReason(withEarlierCause(skipped, first));
    const third = withEarlierCause(skipped, second);
    expect(third).toMatchObject({ code: 'MINER_UNREACHABLE', attempts: 1, durationMs: 4 });
    expect(third.error?.message).toBe('connect ECONNREFUSED 10.0.0.2:50051 (next attempt skipped: circuit open)');
  });

  it("a reason without the figures (an older worker's) still gives the code and message", () => {
    const r = withEarlierCause(skipped, 'MINER_TIMEOUT: deadline exceeded');
    expect(r).toMatchObject({ code: 'MINER_TIMEOUT', attempts: 1, durationMs: 0 });
    expect(r.error?.message).toBe('deadline exceeded (next attempt skipped: circuit open)');
  });

  it('leaves alone a real failure, an earlier skip, and reasons that are not ours', () => {
    const timeout = failed('MINER_TIMEOUT', 'deadline exceeded', 2, 800);
    expect(withEarlierCause(timeout, 'MINER_UNREACHABLE: refused [1 in-call attempt, 3 ms]')).toBe(timeout);
    expect(withEarlierCause(skipped, retryReason(skipped))).toBe(skipped);
    expect(withEarlierCause(skipped, 'job stalled more than allowable limit')).toBe(skipped);
    expect(withEarlierCause(skipped, undefined)).toBe(skipped);
  });
});

describe("a change's write, only while its worker holds the job", () => {
  const data: JobData = { runId: 'hold-run', operation: 'power-target', target: { minerId: 'm1', host: '127.0.0.1', port: 50051, site: '', tags: [], credentials: 'default' }, params: { mutation: { kind: 'power-target', watts: 2000 } } };
  const prepared: TaskResult = { ok: true, code: 'OK', attempts: 1, durationMs: 1, transport: 'plaintext', data: { before: { powerTargetWatts: 3000 }, desired: { powerTargetWatts: 2000 }, equal: false } };
  const applied: TaskResult = { ok: true, code: 'OK', attempts: 1, durationMs: 1, transport: 'plaintext', data: { change: 'applied', before: { powerTargetWatts: 3000 }, after: { powerTargetWatts: 2000 }, verified: true } };
  const closed: TaskResult = { ok: false, code: 'CANCELLED', attempts: 1, durationMs: 1, transport: 'plaintext', error: new FleetError('CANCELLED', 'SetPowerTarget not sent', { writeWindowClosed: true, mayHaveReachedMiner: false }).toPlain() };
  let redis: Redis;
  beforeAll(() => void (redis = new Redis(redisUrl())));
  afterAll(() => redis.disconnect());

  /** An executor whose apply answers from `applies` in turn; the windows it was given are kept. */
  function executor(applies: TaskResult[]) {
    const windows: (number | undefined)[] = [];
    return {
      windows,
      threads: 0,
      close: async () => undefined,
      run: async (input: TaskInput) => {
        if (input.phase === 'prepare') return prepared;
        windows.push(input.writeNotAfterMs);
        return applies.shift()!;
      },
    };
  }

  it('sends within 3/4 of the lock time left; a window that closed first is opened again while the job is still its own', async () => {
    const store = new RunStore(redis, uniquePrefix('hold'));
    const ex = executor([closed, applied]);
    const holds: number[] = [];
    const started = Date.now();
    const r = await runChange(data, ex, store, undefined, async () => (holds.push(1), 20_000));
    expect(r).toMatchObject({ ok: true, data: { change: 'applied' } });
    expect(holds.length).toBe(2);
    expect(ex.windows.length).toBe(2);
    for (const w of ex.windows) {
      expect(w! - started).toBeGreaterThanOrEqual(15_000);
      expect(w! - Date.now()).toBeLessThanOrEqual(15_000);
    }
  });

  it('a job taken over by another worker is given up to it (DelayedError to BullMQ): nothing sent, no outcome', async () => {
    const store = new RunStore(redis, uniquePrefix('hold'));
    const ex = executor([closed, applied]);
    let held = true;
    const hold = async () => {
      const left = held ? 20_000 : undefined;
      held = false; // its window closes, and the job is another worker's by the time it looks again
      return left;
    };
    await expect(runChange(data, ex, store, undefined, hold)).rejects.toBeInstanceOf(TakenOverError);
    await expect(runChange(data, executor([applied]), store, undefined, async () => undefined)).rejects.toThrow(/lost its lock while this worker was stopped/);
    expect(new TakenOverError('x')).toBeInstanceOf(DelayedError);
    expect(await store.getOutcome(data.runId, data.target.minerId)).toBeUndefined();
  });

  it("reads BullMQ's lock: this worker's token and its time left, nothing once another token or none holds it", async () => {
    const prefix = uniquePrefix('hold');
    const job = { queueQualifiedName: `${prefix}:jobs`, id: 'j1' };
    const key = `${prefix}:jobs:j1:lock`;
    await redis.set(key, 'mine', 'PX', 30_000);
    expect(await lockHold(redis, job, 'mine')()).toBeGreaterThan(29_000);
    expect(await lockHold(redis, job, 'theirs')()).toBeUndefined();
    await redis.del(key);
    expect(await lockHold(redis, job, 'mine')()).toBeUndefined();
  });
});

// closeWorker's policy: when a closing worker stops waiting for BullMQ's close. Its inputs are the
// worker's own readings (jobs in flight, Redis reachable, a probe unanswered); the outage paths
// themselves run against a real Redis in interrupt-redis-down and redis-stall. Here the one path a
// real Redis cannot be made to take on demand: BullMQ's close hanging for good after an outage with
// Redis back (taskforcesh/bullmq #4656).
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CLOSE_STUCK_MS, closeWorker, type CloseResult } from '../src/workers/close.js';
import type { RunningWorker } from '../src/workers/worker.js';

interface Readings {
  busy: number;
  reachable: boolean;
  unansweredMs: number;
}

/** A worker whose close ends only when `finish()` is called; its readings are set by the test. */
function fakeWorker(r: Readings): { worker: RunningWorker; finish: () => void } {
  let finish!: () => void;
  const closed = new Promise<void>((resolve) => (finish = resolve));
  const worker = {
    busy: () => r.busy,
    redisReachable: () => r.reachable,
    redisUnansweredMs: () => r.unansweredMs,
    close: () => closed,
  } as unknown as RunningWorker;
  return { worker, finish };
}

function track(p: Promise<CloseResult>): { result: CloseResult | undefined } {
  const t: { result: CloseResult | undefined } = { result: undefined };
  void p.then((r) => (t.result = r));
  return t;
}

/** Idle with Redis answering, the close is still waited for a second before CLOSE_STUCK_MS, and given up as stuck just after. */
async function expectStuckAfterIdle(t: { result: CloseResult | undefined }): Promise<void> {
  await vi.advanceTimersByTimeAsync(CLOSE_STUCK_MS - 1_000);
  expect(t.result).toBeUndefined();
  await vi.advanceTimersByTimeAsync(2_000);
  expect(t.result).toBe('stuck');
}

describe('closeWorker', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('a close that ends is "closed"', async () => {
    const { worker, finish } = fakeWorker({ busy: 0, reachable: true, unansweredMs: 0 });
    const t = track(closeWorker(worker, () => undefined));
    await vi.advanceTimersByTimeAsync(1_000);
    finish();
    await vi.advanceTimersByTimeAsync(0);
    expect(t.result).toBe('closed');
  });

  it('with its jobs done and Redis answering, a close that hangs is given up as "stuck" after CLOSE_STUCK_MS', async () => {
    const { worker } = fakeWorker({ busy: 0, reachable: true, unansweredMs: 0 });
    await expectStuckAfterIdle(track(closeWorker(worker, () => undefined)));
  });

  it('never gives up while jobs are in flight: they wait for Redis (said once), and the idle clock starts when they end', async () => {
    const r = { busy: 3, reachable: false, unansweredMs: 0 };
    const { worker } = fakeWorker(r);
    const waiting = vi.fn();
    const t = track(closeWorker(worker, waiting));
    await vi.advanceTimersByTimeAsync(60_000);
    expect(t.result).toBeUndefined();
    expect(waiting).toHaveBeenCalledTimes(1);
    expect(waiting).toHaveBeenCalledWith(3);
    // Redis is back and the jobs record their outcomes; idle with Redis answering, the close hangs on.
    r.reachable = true;
    await vi.advanceTimersByTimeAsync(30_000);
    r.busy = 0;
    await expectStuckAfterIdle(t);
    expect(waiting).toHaveBeenCalledTimes(1);
  });

  it('with nothing in flight, Redis unreachable or leaving its probe unanswered past CLOSE_STUCK_MS is "redis-down" at once', async () => {
    // How the close stands 600 ms in (after the first check), idle with these readings.
    const after600 = async (r: Omit<Readings, 'busy'>) => {
      const t = track(closeWorker(fakeWorker({ busy: 0, ...r }).worker, () => undefined));
      await vi.advanceTimersByTimeAsync(600);
      return t.result;
    };
    expect(await after600({ reachable: false, unansweredMs: 0 })).toBe('redis-down');
    expect(await after600({ reachable: true, unansweredMs: CLOSE_STUCK_MS + 1 })).toBe('redis-down');
    // A probe unanswered for less is a slow Redis, not a gone one: the close is waited for.
    expect(await after600({ reachable: true, unansweredMs: 1_000 })).toBeUndefined();
  });

  it('a job starting again (busy after idle) resets the idle clock', async () => {
    const r = { busy: 0, reachable: true, unansweredMs: 0 };
    const { worker } = fakeWorker(r);
    const t = track(closeWorker(worker, () => undefined));
    await vi.advanceTimersByTimeAsync(CLOSE_STUCK_MS - 1_000);
    r.busy = 1;
    await vi.advanceTimersByTimeAsync(2_000);
    r.busy = 0;
    await expectStuckAfterIdle(t);
  });
});

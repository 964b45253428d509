// How a retried job attempt's failure is handed to the next attempt (BullMQ's failedReason), and how an
// attempt skipped by an open breaker reports that earlier failure instead of its own zero.
import { describe, expect, it } from 'vitest';
import { FleetError } from '../src/core/fleet-error.js';
import type { ErrorCode } from '../src/core/error-codes.js';
import { retryReason, withEarlierCause } from '../src/workers/processor.js';
import type { TaskResult } from '../src/workers/task.js';

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

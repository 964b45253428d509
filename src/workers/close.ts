// Closing a worker (a `bos-fleet worker`, or the one a foreground poll or rollout runs) that may
// have lost Redis: it never waits for Redis without end with nothing left to record.
import type { RunningWorker } from './worker.js';

/**
 * How a close ended: `closed`; `redis-down`: Redis is unreachable or not answering, and no job is in flight (nothing
 * is lost by stopping now: every queued job and outcome is in Redis); `stuck`: the jobs are done and
 * Redis is reachable, but BullMQ's close hangs after the outage (taskforcesh/bullmq #4656).
 */
export type CloseResult = 'closed' | 'redis-down' | 'stuck';

/**
 * How long a worker with no job left and Redis reachable waits for its queue connections to close;
 * also how long an interrupted command's last read waits for Redis before taking it as gone.
 */
export const CLOSE_STUCK_MS = 5_000;

/**
 * Closes the worker: its jobs in flight finish and record their outcomes. While Redis is down those
 * outcomes wait for it (none is lost), and `waiting` is called once with their number; a worker with
 * nothing in flight has nothing to wait for, and gives up at once instead of waiting for Redis
 * without end. BullMQ's close can also hang for good once Redis went away during it, even after
 * Redis is back: with its jobs done and Redis reachable for a few seconds, it gives up on it.
 */
export async function closeWorker(running: RunningWorker, waiting: (busy: number) => void): Promise<CloseResult> {
  let said = false;
  let idleSince: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  const givenUp = new Promise<'redis-down' | 'stuck'>((resolve) => {
    timer = setInterval(() => {
      const busy = running.busy();
      const reachable = running.redisReachable();
      if (busy > 0) {
        idleSince = undefined;
        if (!reachable && !said) waiting(busy);
        said ||= !reachable;
        return;
      }
      // With nothing in flight, a Redis that leaves a PING unanswered for as long as a stuck close
      // is waited for is as good as gone: stopping loses nothing, and what follows would wait on it.
      if (!reachable || running.redisUnansweredMs() > CLOSE_STUCK_MS) return resolve('redis-down');
      idleSince ??= Date.now();
      if (Date.now() - idleSince > CLOSE_STUCK_MS) resolve('stuck');
    }, 500);
  });
  try {
    return await Promise.race([running.close().then(() => 'closed' as const), givenUp]);
  } finally {
    clearInterval(timer);
  }
}

/** `p`'s value, or undefined as soon as `signal` aborts (a Redis read that waits out an outage). */
export function unlessAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T | undefined> {
  if (!signal) return p;
  if (signal.aborted) return Promise.resolve(undefined);
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<undefined>((resolve) => signal.addEventListener('abort', (onAbort = () => resolve(undefined)), { once: true }));
  return Promise.race([p, aborted]).finally(() => signal.removeEventListener('abort', onAbort!));
}

/**
 * `p`'s value as `{ value }`, or undefined when it has not come within `ms`: an interrupted command's
 * last read, on a Redis that went away as the interruption came (its connection not yet seen to
 * close) or that stopped answering, would otherwise wait for it without end.
 */
export function answeredWithin<T>(p: Promise<T>, ms: number): Promise<{ value: T } | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  return Promise.race([p.then((value) => ({ value })), late]).finally(() => clearTimeout(timer));
}

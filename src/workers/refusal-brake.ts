// While Redis refuses writes (OOM: at its maxmemory; MISCONF: it cannot save; READONLY: a replica),
// or this ACL user's commands (NOPERM), every job fetch of a BullMQ worker fails at once, and BullMQ
// fetches again at once: it waits its runRetryDelay only after a dropped connection. Left alone, each
// consumer asks thousands of times a second (~4,000 refusals/s measured for one worker), a core of the
// worker's CPU and much of Redis's. The brake stops the consumer fetching for a while on each refusal:
// 1 s, doubling while refusals go on, up to 30 s; jobs in flight go on. Nothing is lost: a job is
// fetched once Redis takes it again.
import { redisRefusal } from '../redis/durability.js';

/** The part of a BullMQ Worker the brake drives. */
export interface Brakeable {
  pause(doNotWaitActive?: boolean): Promise<void>;
  resume(): Promise<void> | void;
}

export interface RefusalBrake {
  /** Call with each 'error' of the consumer: true when it was a refusal and the brake is on. */
  onError(err: Error): boolean;
  /** Whether the consumer is held now. */
  held(): boolean;
  /** No more resumes (before the consumer closes). */
  stop(): void;
}

export interface BrakeOptions {
  minMs?: number;
  maxMs?: number;
  /** Told each time the brake goes on, with how long it holds. */
  onHold?: (ms: number, message: string) => void;
  now?: () => number;
}

export function refusalBrake(consumer: Brakeable, opts: BrakeOptions = {}): RefusalBrake {
  const minMs = opts.minMs ?? 1_000;
  const maxMs = opts.maxMs ?? 30_000;
  const now = opts.now ?? Date.now;
  let timer: NodeJS.Timeout | undefined;
  let holdMs = 0;
  let releasedAt = -Infinity;
  let stopped = false;
  return {
    onError(err) {
      if (!redisRefusal(err.message)) return false;
      if (timer || stopped) return true;
      // Refused again soon after the last hold: hold longer. Long after it: a new episode.
      holdMs = now() - releasedAt < Math.max(holdMs, minMs) * 2 ? Math.min(holdMs * 2, maxMs) : minMs;
      consumer.pause(true).catch(() => undefined);
      opts.onHold?.(holdMs, err.message);
      timer = setTimeout(() => {
        timer = undefined;
        releasedAt = now();
        if (!stopped) void consumer.resume();
      }, holdMs);
      return true;
    },
    held: () => timer !== undefined,
    stop() {
      stopped = true;
      clearTimeout(timer);
      timer = undefined;
    },
  };
}

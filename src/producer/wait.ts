// Waits for a run to have an outcome for every miner, reporting progress as counts change.
import type { RunStore } from '../fleet/run-store.js';
import { unlessAborted } from '../workers/close.js';

export interface Progress {
  done: number;
  total: number;
  counts: Record<string, number>;
}

/**
 * The run's progress once every miner has an outcome, or at `signal`. A read waiting out a Redis
 * outage does not hold up the interruption: the last progress read is returned (undefined: none yet).
 */
export async function waitForRun(
  store: RunStore,
  runId: string,
  total: number,
  opts: { onProgress?: (p: Progress) => void; intervalMs?: number; signal?: AbortSignal; check?: () => Promise<unknown>; checkAfterMs?: number } = {},
): Promise<Progress | undefined> {
  let last: Progress | undefined;
  let movedAt = Date.now();
  for (;;) {
    const read = await unlessAborted(store.getCounts(runId), opts.signal);
    if (!read) return last;
    if (read.done !== last?.done) movedAt = Date.now();
    last = { done: read.done, total, counts: read.counts };
    opts.onProgress?.(last);
    if (read.done >= total || opts.signal?.aborted) return last;
    // No outcome for a while: `check` looks for what would keep the run from ever ending (it throws to end the wait).
    if (opts.check && Date.now() - movedAt >= (opts.checkAfterMs ?? STILL_CHECK_MS)) {
      const checking = opts.check();
      checking.catch(() => undefined); // an interruption may end the wait first
      await unlessAborted(checking, opts.signal);
      if (opts.signal?.aborted) return last;
      movedAt = Date.now();
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 200));
  }
}

/** How long a run waited on may go without a new outcome before its `check` runs (and again after each). */
export const STILL_CHECK_MS = 10_000;

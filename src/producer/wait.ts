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
  opts: { onProgress?: (p: Progress) => void; intervalMs?: number; signal?: AbortSignal } = {},
): Promise<Progress | undefined> {
  let last: Progress | undefined;
  for (;;) {
    const read = await unlessAborted(store.getCounts(runId), opts.signal);
    if (!read) return last;
    last = { done: read.done, total, counts: read.counts };
    opts.onProgress?.(last);
    if (read.done >= total || opts.signal?.aborted) return last;
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 200));
  }
}

// Waits for a run to have an outcome for every miner, reporting progress as counts change.
import type { RunStore } from '../fleet/run-store.js';

export interface Progress {
  done: number;
  total: number;
  counts: Record<string, number>;
}

export async function waitForRun(
  store: RunStore,
  runId: string,
  total: number,
  opts: { onProgress?: (p: Progress) => void; intervalMs?: number; signal?: AbortSignal } = {},
): Promise<Progress> {
  for (;;) {
    const { done, counts } = await store.getCounts(runId);
    const p = { done, total, counts };
    opts.onProgress?.(p);
    if (done >= total || opts.signal?.aborted) return p;
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 200));
  }
}

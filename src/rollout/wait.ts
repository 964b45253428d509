// Waiting for a rollout to end (`rollout … --wait`, and the tests), or for an interruption.
import type { Redis } from 'ioredis';
import { DEFAULT_PREFIX } from '../fleet/keys.js';
import { unlessAborted } from '../workers/close.js';
import { waveOutcomes } from './control.js';
import { rolloutReport, type RolloutReport } from './create.js';
import { noRollout, RolloutStore, TERMINAL } from './store.js';

/**
 * Waits until the rollout ends and every miner of its started waves has its outcome (a rollout halted
 * or aborted mid-wave still has miners being changed, and the rest of the wave to cancel); `signal`
 * stops the wait early, returning the rollout as it was at its last look (undefined: there was none,
 * the signal having come before the first read, or while Redis was unreachable from the start).
 */
export function waitForRollout(redis: Redis, rolloutId: string, prefix?: string, onTick?: (r: RolloutReport) => void, signal?: undefined, stallMs?: number): Promise<RolloutReport>;
export function waitForRollout(redis: Redis, rolloutId: string, prefix: string, onTick: ((r: RolloutReport) => void) | undefined, signal: AbortSignal, stallMs?: number): Promise<RolloutReport | undefined>;
export async function waitForRollout(
  redis: Redis,
  rolloutId: string,
  prefix = DEFAULT_PREFIX,
  onTick?: (r: RolloutReport) => void,
  signal?: AbortSignal,
  stallMs = SETTLE_STALL_MS,
): Promise<RolloutReport | undefined> {
  const store = new RolloutStore(redis, prefix);
  let unsettled = -1;
  let changedAt = Date.now();
  let last: RolloutReport | undefined;
  for (;;) {
    // A read waiting out a Redis outage does not hold up `signal`: the last report read is returned.
    const r = await unlessAborted(rolloutReport(redis, rolloutId, prefix), signal);
    if (!r) {
      if (signal?.aborted) return last;
      throw noRollout(rolloutId);
    }
    last = r;
    onTick?.(r);
    if (signal?.aborted) return r;
    if (TERMINAL.includes(r.state)) {
      const status = await unlessAborted(store.status(rolloutId), signal);
      if (signal?.aborted) return r;
      const started = status?.wave ?? -1;
      const left = r.waves.reduce((n, w) => n + (w.index > started ? 0 : Math.max(0, w.miners - waveOutcomes(w))), 0);
      if (left === 0) return r;
      // No worker settling them (none runs): the report says how many are left, instead of a wait without end.
      if (left !== unsettled) [unsettled, changedAt] = [left, Date.now()];
      else if (Date.now() - changedAt > stallMs) return r;
    }
    await new Promise((res) => setTimeout(res, 300));
  }
}

/** How long an ended rollout's wait goes on with no miner of its started waves getting an outcome. */
const SETTLE_STALL_MS = 30_000;

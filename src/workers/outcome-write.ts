// A job's outcome is its result: one Redis refuses to take (full memory, a full disk, a replica) is
// written again once it takes writes, instead of failing the job. Failed, the job would stay active —
// BullMQ cannot record the failure either — and run again only once its lock expired and a stall
// check found it: up to a minute after Redis had room again, the miner polled or checked twice.
import type { Outcome } from '../fleet/outcome.js';
import type { RunStore } from '../fleet/run-store.js';
import { redisRefusal } from '../redis/durability.js';

/** How long an outcome waits for Redis to take writes again; then its job fails as before (and runs again). */
export const OUTCOME_REFUSED_WAIT_MS = 20_000;

/** `store.writeOutcome`, tried again (0.25 s, 0.5 s … 2 s apart) while Redis refuses writes, for up to `waitMs`. */
export async function writeOutcomeThroughRefusals(store: RunStore, outcome: Outcome, waitMs = OUTCOME_REFUSED_WAIT_MS): Promise<boolean> {
  const giveUpAt = Date.now() + waitMs;
  for (let delayMs = 250; ; delayMs = Math.min(delayMs * 2, 2_000)) {
    try {
      return await store.writeOutcome(outcome);
    } catch (err) {
      const refusal = redisRefusal(err instanceof Error ? err.message : String(err));
      // NOPERM does not pass by itself: said at once, as any other error.
      if (!refusal || refusal === 'NOPERM' || Date.now() + delayMs > giveUpAt) throw err;
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }
}

// A rollback schedule's tick (`schedule add rollback --of SCHEDULE`): the end of a curtailment
// window. It rolls back the latest rollout of another schedule, putting each miner back to its own
// recorded `before` — a farm of several models has no single power target to "restore" to.
import { DelayedError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { MutationSpec } from '../workers/ops/mutation-spec.js';
import { operationOf } from '../workers/ops/mutation-spec.js';
import { changeRolloutState, startRollout } from './create.js';
import { RolloutOverlapError } from './overlap.js';
import { rollbackPlanFor, RolloutSettlingError, withPoolPasswordRef } from './rollback.js';
import { RolloutStore, TERMINAL } from './store.js';

export interface RollbackScheduleSpec {
  /** The rollout schedule whose latest rollout each tick rolls back. */
  of: string;
  /** Pools: the credentials profile whose password every restored pool gets (a miner never reports its pool passwords). */
  poolPasswordRef?: string;
  waves: number[];
  maxFailureRate: number;
  minSample: number;
  pauseBetweenMs: number;
  maxInFlightPerSite?: number;
}

/** `settling`: the rollout to roll back has miners still being changed; the tick has to look again once they have their outcomes. */
export type RollbackTick = { started: string } | { skipped: string } | { settling: string; lookAgainMs: number };

/**
 * Rolls back `sourceLast` (the rollout the source schedule's last tick started) as rollout `id`.
 * Skips, saying why, when there is nothing to do: no rollout yet, rolled back already (a restore
 * tick after a day whose lowering tick did not start would otherwise restore the day before's
 * values over whatever was changed since), or no miner changed.
 *
 * The tick is the end of the window: a lowering still going then (its next wave after a long
 * --pause-between, paused by hand, a step that failed) is aborted first, saying why, so it changes
 * no more miners; the miners it changed are restored once those being changed have their outcomes.
 */
export async function rollBackLatest(
  redis: Redis,
  prefix: string,
  o: { id: string; scheduleId: string; spec: RollbackScheduleSpec; sourceLast: string | undefined; timeoutMs?: number; /** Called just before the rollback is created. */ onStart?: () => Promise<unknown> },
): Promise<RollbackTick> {
  const { id, spec, sourceLast } = o;
  if (!sourceLast) return { skipped: `schedule ${spec.of} has started no rollout yet: nothing to roll back` };
  const store = new RolloutStore(redis, prefix);
  const by = await rolledBackBy(store, sourceLast);
  // This very tick, delivered again: its rollback is started already.
  if (by === id) return { started: id };
  if (by) return { skipped: `rollout ${sourceLast} (schedule ${spec.of}'s latest) was rolled back already, by ${by}` };
  const running = async () => {
    const st = await store.status(sourceLast);
    return st && !TERMINAL.includes(st.state) ? st.state : undefined;
  };
  if (await running()) {
    const why = `the end of its window: schedule ${o.scheduleId} restores the miners it changed (rollout ${id})`;
    // It may end by itself meanwhile: then there is nothing to abort.
    await changeRolloutState(redis, sourceLast, 'abort', `schedule:${o.scheduleId}`, prefix, why).catch(async (err: unknown) => {
      if (await running()) throw err;
    });
  }
  let plan;
  try {
    plan = await rollbackPlanFor(redis, sourceLast, prefix);
  } catch (err) {
    // Looked at again soon — for a large rollout less often: each look reads all of its outcomes.
    if (err instanceof RolloutSettlingError) return { settling: `cannot roll back rollout ${sourceLast} of schedule ${spec.of} yet: ${err.message}`, lookAgainMs: Math.min(30_000, Math.max(1_000, err.miners / 2)) };
    throw new Error(`cannot roll back rollout ${sourceLast} of schedule ${spec.of}: ${(err as Error).message}`);
  }
  if (plan.targets.length === 0) return { skipped: `rollout ${sourceLast} (schedule ${spec.of}'s latest) changed no miner it can restore: nothing to roll back` };
  const specByMiner = spec.poolPasswordRef !== undefined ? withPoolPasswordRef(plan.specByMiner, spec.poolPasswordRef) : plan.specByMiner;
  const first = specByMiner[plan.targets[0]!.minerId] as MutationSpec;
  await o.onStart?.();
  try {
    await startRollout(
      redis,
      {
        operation: operationOf(first),
        spec: first,
        specByMiner,
        targets: plan.targets,
        inventoryDigest: plan.rec.inventoryDigest,
        waves: spec.waves,
        maxFailureRate: spec.maxFailureRate,
        minSample: spec.minSample,
        pauseBetweenMs: spec.pauseBetweenMs,
        ...(spec.maxInFlightPerSite ? { maxInFlightPerSite: spec.maxInFlightPerSite } : {}),
        actor: `schedule:${o.scheduleId}`,
        rolloutId: id,
        rollbackOf: sourceLast,
        ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}),
        ...(plan.rec.tlsSites ? { tlsSites: plan.rec.tlsSites } : {}),
      },
      prefix,
    );
  } catch (err) {
    if (err instanceof RolloutOverlapError) return { skipped: err.message };
    throw err;
  }
  return { started: id };
}

/** How long after its time a rollback tick waits for the miners its lowering is still changing. */
const SETTLE_WAIT_MS = 15 * 60_000;

/**
 * A tick whose lowering still has miners being changed: they get their outcomes within their jobs'
 * time, so the tick looks again `afterMs` later (delayed in BullMQ, holding no worker's slot) for up to
 * SETTLE_WAIT_MS after its time `tickMs`; past that (or delivered without a lock token) it fails, saying why.
 */
export async function lookAgainLater(job: Job, token: string | undefined, tickMs: number, why: string, afterMs: number): Promise<never> {
  if (token && Date.now() < tickMs + SETTLE_WAIT_MS) {
    await job.moveToDelayed(Date.now() + afterMs, token);
    throw new DelayedError();
  }
  throw new Error(why);
}

/**
 * Why a lowering tick must not start: its schedule's previous rollout `last` has restorable changes
 * that no rollback restored yet, while the schedules `restoreIds` restore this schedule's rollouts
 * (a restore tick failed, say). Lowered again now, those miners would be "already set", and the restore that
 * follows — of the newest lowering only — would leave them lowered for good. Skipped instead, the
 * schedule's latest rollout stays `last`, so the next restore tick restores it. Undefined: go ahead.
 */
export async function unrestoredLowering(redis: Redis, prefix: string, last: string | undefined, restoreIds: readonly string[]): Promise<string | undefined> {
  if (!last || restoreIds.length === 0) return undefined;
  const store = new RolloutStore(redis, prefix);
  const rec = await store.get(last);
  if (!rec || rec.operation === 'reboot' || (await rolledBackBy(store, last))) return undefined;
  try {
    if ((await rollbackPlanFor(redis, last, prefix)).targets.length === 0) return undefined;
  } catch (err) {
    if (!(err instanceof RolloutSettlingError)) return undefined; // the restore tick says what is wrong
  }
  return `rollout ${last} (this schedule's previous) is not restored yet, and schedule ${restoreIds.join(', ')} restores this schedule's rollouts: lowered again now, its miners would count as already set, and the next restore would leave them lowered for good; so this tick changes nothing, and the next restore tick restores ${last} (or now: bos-fleet rollout rollback ${last})`;
}

/**
 * The kept rollout that rolls all of `rolloutId` back, if any (all are read: hosts' clocks order the
 * list, and they may disagree). A rollback of part of it (a rack rolled back by hand) leaves the rest
 * to the restore.
 */
async function rolledBackBy(store: RolloutStore, rolloutId: string): Promise<string | undefined> {
  for (const id of await store.listAll()) {
    const rec = id === rolloutId ? undefined : await store.get(id);
    if (rec?.rollbackOf === rolloutId && !rec.rollbackOnly) return id;
  }
  return undefined;
}

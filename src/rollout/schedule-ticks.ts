// A schedule's ticks: each starts its poll run or rollout (or rolls back the latest rollout of
// another schedule), never beside the schedule's previous one; a tick that fails for good is counted.
import type { Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { isFinalFailure } from '../fleet/job.js';
import { RunStore } from '../fleet/run-store.js';
import { DEFAULT_RETENTION } from '../fleet/retention.js';
import { BACKGROUND_PRIORITY, enqueueRun, type EnqueueOptions } from '../producer/enqueue.js';
import { lostJobsText, noneIfVanished, requeueLost } from '../producer/lost-jobs.js';
import { leaveToWorkers } from '../producer/run-keeper.js';
import { startRollout } from './create.js';
import { RolloutOverlapError } from './overlap.js';
import { TERMINAL } from './store.js';
import { pruneScheduleRollouts } from './retention.js';
import { lookAgainLater, rollBackLatest, unrestoredLowering } from './scheduled-rollback.js';
import { getSchedule, lastProgress, scheduleDefs, tickKey, tickState, type ScheduleDef } from './schedules.js';

/** The tick's time, from the scheduler job id (`repeat:<schedulerId>:<millis>`). */
function tickMillis(job: Job): string {
  const last = String(job.id ?? '').split(':').pop() ?? '';
  return /^\d+$/.test(last) ? last : String(job.timestamp);
}

// Counts tick ARGV[2] in field ARGV[1] of the tick hash KEYS[1] and sets the fields ARGV[4..] (when,
// why), once per tick: the newest ARGV[3] tick times counted there are kept (field `<ARGV[1]>Ticks`)
// and one among them is not counted again. A tick delivered twice (its worker stalled after counting
// it) or a count whose reply a dropped connection lost (ioredis sends it again on the new one) is
// one tick, not two.
const COUNT_TICK = `
local listField = ARGV[1] .. 'Ticks'
local seen = redis.call('HGET', KEYS[1], listField) or ''
if string.find(' ' .. seen .. ' ', ' ' .. ARGV[2] .. ' ', 1, true) then return 0 end
local list = seen == '' and ARGV[2] or (seen .. ' ' .. ARGV[2])
local n = select(2, string.gsub(list, ' ', ''))
if n >= tonumber(ARGV[3]) then list = string.sub(list, string.find(list, ' ', 1, true) + 1) end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HSET', KEYS[1], listField, list, unpack(ARGV, 4))
return 1`;

/** How many counted tick times a schedule keeps per counter to know a tick counted already. */
const TICKS_KEPT = 32;

/**
 * Counts a tick (by its time, `tickMillis`) as skipped or failed on its schedule, with its time and
 * reason, once however often it is counted. Returns whether this call counted it.
 */
export async function countTick(redis: Redis, prefix: string, scheduleId: string, counter: 'skipped' | 'failed', tick: string, at: string, reason: string): Promise<boolean> {
  const fields = [`${counter}At`, at, `${counter}Reason`, reason.slice(0, 500)];
  return (await redis.eval(COUNT_TICK, 1, tickKey(prefix, scheduleId), counter, tick, String(TICKS_KEPT), ...fields)) === 1;
}

/**
 * A tick that failed for good (its attempts used): counted on its schedule with its time and error,
 * for `schedule list`, and said in the worker's log. A scheduled curtailment that did not start is
 * not left for the farm to find out from its power bill.
 */
export async function recordFailedTick(redis: Redis, prefix: string, job: Job<{ scheduleId: string }> | undefined, err: Error): Promise<boolean> {
  if (!job?.data?.scheduleId || !isFinalFailure(job, err)) return false;
  const tick = tickMillis(job);
  const at = new Date(Number(tick)).toISOString();
  console.error(`bos-fleet: schedule ${job.data.scheduleId}: the tick of ${at} failed after ${job.attemptsMade} attempt${job.attemptsMade === 1 ? '' : 's'}: ${err.message}`);
  await countTick(redis, prefix, job.data.scheduleId, 'failed', tick, at, err.message);
  return true;
}

/** How a poll schedule's ticks enqueue their runs. */
function tickPollOptions(def: ScheduleDef): EnqueueOptions {
  return {
    operation: 'poll',
    series: def.scheduleId,
    ...(def.timeoutMs ? { timeoutMs: def.timeoutMs } : {}),
    ...(def.retention ? { retention: def.retention } : {}),
    ...(def.tlsSites ? { tlsSites: def.tlsSites } : {}),
    priority: BACKGROUND_PRIORITY,
  };
}

export function createScheduleProcessor(deps: { redis: Redis; prefix: string; jobs: Queue; control: Queue }) {
  const runs = new RunStore(deps.redis, deps.prefix);
  /** What of the schedule's previous run or rollout is still going, if anything. */
  const unfinished = async (def: ScheduleDef, last: string | undefined): Promise<string | undefined> => {
    const p = last ? await lastProgress(deps.redis, deps.prefix, def, last) : undefined;
    if (!p || !last) return undefined;
    if ('done' in p) {
      if (p.done >= p.total) return undefined;
      // Its miners whose jobs Redis lost (a crash of its host, a failover) go in again: without them it never ends, and every tick is skipped.
      // (Only a poll's progress has `done`.) A run with kept miners has a keeper doing that already
      // (run-keeper.ts); only one started before keepers has none.
      const kept = (await deps.redis.exists(runs.k.kept(last))) === 1;
      const lost = kept ? 0 : await requeueLost(deps.jobs, runs, last, { targets: def.targets, digest: def.inventoryDigest }, tickPollOptions(def)).catch(noneIfVanished);
      return `run ${last} has ${p.total - p.done} of ${p.total} miners to go${lost ? `; ${lostJobsText(lost, p.total)}` : ''}`;
    }
    return TERMINAL.includes(p.state) ? undefined : `rollout ${last} is ${p.state}`;
  };
  // The rollout is started whatever happens here: a failed clean-up is said, not thrown.
  const pruneOld = (def: ScheduleDef, started: string) =>
    pruneScheduleRollouts(deps.redis, deps.prefix, def.scheduleId, def.retention ?? DEFAULT_RETENTION).catch((err: unknown) => {
      console.error(`bos-fleet: schedule ${def.scheduleId}: rollout ${started} started, but deleting its old finished rollouts failed: ${err instanceof Error ? err.message : String(err)}`);
    });
  return async (job: Job<{ scheduleId: string }>, token?: string): Promise<{ started?: string; skipped?: string } | undefined> => {
    const def = await getSchedule(deps.redis, job.data.scheduleId, deps.prefix);
    if (!def) return undefined;
    // One id per tick: a tick delivered twice (stalled worker) starts its run once.
    const id = `${def.scheduleId}-${tickMillis(job)}`;
    // A tick never starts a run or rollout beside the schedule's previous one: a poll that takes longer
    // than the interval would otherwise pile runs up in Redis without end, and two rollouts of one
    // schedule would change the same miners at once. The tick is skipped, counted and said.
    const { last, rolledBack } = await tickState(deps.redis, deps.prefix, def.scheduleId);
    const skip = async (why: string) => {
      await countTick(deps.redis, deps.prefix, def.scheduleId, 'skipped', tickMillis(job), new Date().toISOString(), why);
      console.error(`bos-fleet: schedule ${def.scheduleId}: tick skipped, ${why}`);
      return { skipped: id };
    };
    const busy = last === id ? undefined : await unfinished(def, last);
    if (busy) return skip(busy);
    const markLast = () => deps.redis.hset(tickKey(deps.prefix, def.scheduleId), 'last', id);
    // A rollback tick that finds nothing to roll back leaves `last` on the rollback before it.
    if (def.kind === 'rollback' && def.rollback) {
      const source = await getSchedule(deps.redis, def.rollback.of, deps.prefix);
      if (!source) throw new Error(`schedule ${def.rollback.of}, whose latest rollout this one rolls back, is gone (removed): remove this one too, or add it again with another --of`);
      const { last: sourceLast } = await tickState(deps.redis, deps.prefix, source.scheduleId);
      // The source this schedule rolled back last: never twice (its rollback may since have been deleted by retention).
      if (sourceLast && rolledBack === sourceLast && last !== id) return skip(`rollout ${sourceLast} (schedule ${source.scheduleId}'s latest) was rolled back already, by this schedule`);
      const r = await rollBackLatest(deps.redis, deps.prefix, { id, scheduleId: def.scheduleId, spec: def.rollback, sourceLast, ...(def.timeoutMs ? { timeoutMs: def.timeoutMs } : {}), onStart: markLast });
      if ('skipped' in r) return skip(r.skipped);
      if ('settling' in r) return lookAgainLater(job, token, Number(tickMillis(job)), r.settling, r.lookAgainMs);
      await deps.redis.hset(tickKey(deps.prefix, def.scheduleId), 'rolledBack', sourceLast as string);
      await pruneOld(def, id);
      return r;
    }
    const inventory = { file: def.inventoryFile, targets: def.targets, digest: def.inventoryDigest };
    if (def.kind === 'poll') {
      await markLast();
      // Left to the workers as `poll --enqueue-only` is: its jobs Redis loses go in again within seconds,
      // not at the next tick (a tick an hour away), and also once the schedule is removed.
      const opts = tickPollOptions(def);
      await enqueueRun(deps.jobs, runs, inventory, { ...opts, runId: id, beforeJobs: (record) => leaveToWorkers(runs, deps.control, record, def.targets, opts) });
      return { started: id };
    }
    const r = def.rollout;
    if (!r) return undefined;
    const restores = (await scheduleDefs(deps.redis, deps.prefix)).filter((s) => s.kind === 'rollback' && s.rollback?.of === def.scheduleId).map((s) => s.scheduleId);
    const unrestored = last === id ? undefined : await unrestoredLowering(deps.redis, deps.prefix, last, restores);
    if (unrestored) return skip(unrestored);
    await markLast();
    try {
      await startRollout(
        deps.redis,
        { ...r, targets: def.targets, inventoryDigest: def.inventoryDigest, actor: `schedule:${def.scheduleId}`, rolloutId: id, ...(def.timeoutMs ? { timeoutMs: def.timeoutMs } : {}), ...(def.tlsSites ? { tlsSites: def.tlsSites } : {}) },
        deps.prefix,
      );
    } catch (err) {
      // Another unfinished rollout changes the same setting on these miners (or one of the two reboots): not beside it.
      if (err instanceof RolloutOverlapError) return skip(err.message);
      throw err;
    }
    await pruneOld(def, id);
    return { started: id };
  };
}

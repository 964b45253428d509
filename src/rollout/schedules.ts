// Schedules: BullMQ job schedulers that start a poll run or a rollout on every tick. BullMQ hands
// each tick to exactly one worker. Ticks missed while every worker was down are NOT replayed: the one
// pending tick fires late when a worker returns, and the schedule continues from then.
import { randomBytes } from 'node:crypto';
import { CronExpressionParser } from 'cron-parser';
import type { Redis } from 'ioredis';
import type { JobTarget, MutationOperation } from '../fleet/job.js';
import { DEFAULT_PREFIX } from '../fleet/keys.js';
import { RunStore } from '../fleet/run-store.js';
import type { RetentionPolicy } from '../fleet/retention.js';
import type { MutationSpec } from '../workers/ops/mutation-spec.js';
import { appendAudit } from './audit.js';
import { RolloutStore, type RolloutState } from './store.js';
import type { RollbackScheduleSpec } from './scheduled-rollback.js';
import { openQueue } from '../fleet/queue.js';

export const SCHEDULE_QUEUE = 'schedules';

export interface ScheduleDef {
  scheduleId: string;
  kind: 'poll' | 'rollout' | 'rollback';
  everyMs?: number;
  cron?: string;
  tz?: string;
  targets: JobTarget[];
  inventoryFile: string;
  inventoryDigest: string;
  timeoutMs?: number;
  /** Sites (`*` = all) whose miners its runs and rollouts reach over TLS only. */
  tlsSites?: string[];
  /** The retention of its finished runs or rollouts (default: DEFAULT_RETENTION of fleet/retention). */
  retention?: RetentionPolicy;
  rollout?: {
    operation: MutationOperation;
    spec: MutationSpec;
    waves: number[];
    maxFailureRate: number;
    minSample: number;
    pauseBetweenMs: number;
    maxInFlightPerSite?: number;
  };
  /** kind 'rollback': whose latest rollout each tick rolls back (its `targets` are that schedule's, for show). */
  rollback?: RollbackScheduleSpec;
  actor: string;
  createdAt: string;
}

const defKey = (prefix: string, id: string) => `${prefix}:schedule:${id}`;
const listKey = (prefix: string) => `${prefix}:schedules`;
/** A schedule's tick state: `last` (the run or rollout its last tick started), `skipped`, `skippedAt`. */
export const tickKey = (prefix: string, id: string) => `${prefix}:schedule:${id}:ticks`;

export interface TickState {
  last?: string;
  /** Ticks that started nothing: the schedule's previous run or rollout had not finished, or (a rollback's) there was nothing to roll back. */
  skipped: number;
  skippedAt?: string;
  skippedReason?: string;
  /** Ticks that could not start their run or rollout (Redis full, say), after TICK_RETRY. */
  failed: number;
  failedAt?: string;
  failedReason?: string;
  /** A rollback schedule's: the rollout its last started tick rolled back (never rolled back twice). */
  rolledBack?: string;
}

/** A tick that throws is tried again 1 s, 2 s and 4 s later before it counts as failed. */
export const TICK_RETRY = { attempts: 4, backoff: { type: 'exponential', delay: 1_000 } };

export async function tickState(redis: Redis, prefix: string, id: string): Promise<TickState> {
  const h = await redis.hgetall(tickKey(prefix, id));
  return {
    ...(h['last'] ? { last: h['last'] } : {}),
    skipped: Number(h['skipped'] ?? 0),
    ...(h['skippedAt'] ? { skippedAt: h['skippedAt'] } : {}),
    ...(h['skippedReason'] ? { skippedReason: h['skippedReason'] } : {}),
    failed: Number(h['failed'] ?? 0),
    ...(h['failedAt'] ? { failedAt: h['failedAt'] } : {}),
    ...(h['failedReason'] ? { failedReason: h['failedReason'] } : {}),
    ...(h['rolledBack'] ? { rolledBack: h['rolledBack'] } : {}),
  };
}

export function newScheduleId(): string {
  return `sch-${randomBytes(4).toString('hex')}`;
}

/**
 * Throws, naming the flag and the value, unless `cron` is a pattern BullMQ's parser takes and `tz` an
 * IANA time zone.
 */
export function checkCron(cron: string, tz?: string): void {
  if (tz !== undefined) {
    try {
      new Intl.DateTimeFormat('en-US', { timeZone: tz });
    } catch {
      throw new Error(`--tz "${tz}" is not a time zone: give an IANA name such as Europe/Prague or UTC`);
    }
  }
  const fields = `(fields: minute hour day-of-month month day-of-week, e.g. "0 14 * * *")`;
  // The parser also takes 4 and 6 fields, reading them in other places: "0 14 * *" (a field left out)
  // would fire at 00:00 on the 14th, not at 14:00 every day.
  const count = cron.trim().split(/\s+/).length;
  if (!cron.trim().startsWith('@') && count !== 5) throw new Error(`--cron "${cron}" has ${count} field${count === 1 ? '' : 's'}, not 5 ${fields}`);
  try {
    CronExpressionParser.parse(cron, tz ? { tz } : {});
  } catch (err) {
    throw new Error(`--cron "${cron}" is not a cron pattern: ${(err as Error).message} ${fields}`);
  }
}

/**
 * When a schedule would fire first if added at `now`: an `--every` schedule at once (BullMQ's job
 * scheduler fires its first tick when it is added), a cron one at the pattern's next time in its zone.
 */
export function firstTickAt(def: Pick<ScheduleDef, 'everyMs' | 'cron' | 'tz'>, now = Date.now()): number {
  if (!def.cron) return now;
  return CronExpressionParser.parse(def.cron, { currentDate: new Date(now), ...(def.tz ? { tz: def.tz } : {}) })
    .next()
    .getTime();
}

/**
 * Adds a schedule, or replaces the one with the same id (then `replaced` is true); `nextAt` is its
 * next tick as BullMQ's scheduler holds it.
 */
export async function addSchedule(redis: Redis, def: ScheduleDef, prefix = DEFAULT_PREFIX): Promise<{ replaced: boolean; nextAt?: string }> {
  if (!def.everyMs === !def.cron) throw new Error('a schedule needs exactly one of --every and --cron');
  if (def.cron) checkCron(def.cron, def.tz);
  const previous = await redis.get(defKey(prefix, def.scheduleId));
  await redis.set(defKey(prefix, def.scheduleId), JSON.stringify(def));
  await redis.sadd(listKey(prefix), def.scheduleId);
  const q = openQueue(SCHEDULE_QUEUE, redis, prefix);
  let next: number | undefined;
  try {
    await q.upsertJobScheduler(def.scheduleId, def.everyMs ? { every: def.everyMs } : { pattern: def.cron as string, ...(def.tz ? { tz: def.tz } : {}) }, {
      name: 'tick',
      data: { scheduleId: def.scheduleId },
      opts: { ...TICK_RETRY, removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } },
    });
    // Its next tick is only said: a failed read gives none (the caller computes it), never the undo below.
    next = await q.getJobScheduler(def.scheduleId).then((s) => s?.next, () => undefined);
  } catch (err) {
    // A schedule BullMQ refused is not listed as if it would fire; one it replaced stays as it was.
    if (previous) await redis.set(defKey(prefix, def.scheduleId), previous);
    else await Promise.all([redis.del(defKey(prefix, def.scheduleId)), redis.srem(listKey(prefix), def.scheduleId)]);
    throw err;
  } finally {
    await q.close();
  }
  const replaced = previous !== null;
  await appendAudit(redis, { actor: def.actor, action: 'schedule.add', subject: def.scheduleId, targetDigest: def.inventoryDigest, details: { kind: def.kind, every: def.everyMs, cron: def.cron, tz: def.tz, rollout: def.rollout, ...(def.rollback ? { rollback: def.rollback } : {}), ...(def.tlsSites ? { tlsSites: def.tlsSites } : {}), ...(replaced ? { replaced } : {}) } }, prefix);
  return { replaced, ...(next ? { nextAt: new Date(next).toISOString() } : {}) };
}

export async function removeSchedule(redis: Redis, scheduleId: string, actor: string, prefix = DEFAULT_PREFIX): Promise<void> {
  const def = await getSchedule(redis, scheduleId, prefix);
  if (!def) throw new Error(`no schedule "${scheduleId}" (see bos-fleet schedule list)`);
  const q = openQueue(SCHEDULE_QUEUE, redis, prefix);
  try {
    await q.removeJobScheduler(scheduleId);
  } finally {
    await q.close();
  }
  await redis.del(defKey(prefix, scheduleId), tickKey(prefix, scheduleId));
  await redis.srem(listKey(prefix), scheduleId);
  await appendAudit(redis, { actor, action: 'schedule.remove', subject: scheduleId, targetDigest: def.inventoryDigest }, prefix);
}

export async function getSchedule(redis: Redis, scheduleId: string, prefix = DEFAULT_PREFIX): Promise<ScheduleDef | undefined> {
  const raw = await redis.get(defKey(prefix, scheduleId));
  return raw ? (JSON.parse(raw) as ScheduleDef) : undefined;
}

/** How the run or rollout a schedule's last tick started is doing: a poll's outcomes so far, a rollout's state. */
type LastProgress = { done: number; total: number } | { state: RolloutState; reason?: string };

/** `last`'s progress; none when it is gone (deleted by retention: long finished). */
export async function lastProgress(redis: Redis, prefix: string, def: ScheduleDef, last: string): Promise<LastProgress | undefined> {
  if (def.kind === 'poll') {
    const runs = new RunStore(redis, prefix);
    const record = await runs.getRun(last);
    return record ? { done: (await runs.getCounts(last)).done, total: record.total } : undefined;
  }
  const st = await new RolloutStore(redis, prefix).status(last);
  return st ? { state: st.state, ...(st.reason ? { reason: st.reason } : {}) } : undefined;
}

/** For `schedule list`: `300/300 miners`, or a rollout's state and why it stopped (`halted: wave 0: failure rate …`). */
const lastStateText = (p: LastProgress): string => ('done' in p ? `${p.done}/${p.total} miners` : `${p.state}${p.reason ? `: ${p.reason}` : ''}`);

/** Every schedule's definition, by id, read in one call. */
export async function scheduleDefs(redis: Redis, prefix = DEFAULT_PREFIX): Promise<ScheduleDef[]> {
  const ids = (await redis.smembers(listKey(prefix))).sort();
  const raw = ids.length ? await redis.mget(ids.map((id) => defKey(prefix, id))) : [];
  return raw.flatMap((r) => (r ? [JSON.parse(r) as ScheduleDef] : []));
}

export async function listSchedules(redis: Redis, prefix = DEFAULT_PREFIX): Promise<(ScheduleDef & TickState & { nextAt?: string; lastState?: string })[]> {
  const defs = await scheduleDefs(redis, prefix);
  const byId = new Map(defs.map((d) => [d.scheduleId, d]));
  const q = openQueue(SCHEDULE_QUEUE, redis, prefix);
  try {
    const out = [];
    for (const own of defs) {
      const id = own.scheduleId;
      // A rollback schedule's ticks roll back its lowering's miners as that schedule has them now (it may have been added again since).
      const source = own.rollback ? byId.get(own.rollback.of) : undefined;
      const def = source ? { ...own, targets: source.targets } : own;
      const s = await q.getJobScheduler(id);
      const ticks = await tickState(redis, prefix, id);
      const progress = ticks.last ? await lastProgress(redis, prefix, def, ticks.last) : undefined;
      out.push({ ...def, ...ticks, ...(progress ? { lastState: lastStateText(progress) } : {}), ...(s?.next ? { nextAt: new Date(s.next).toISOString() } : {}) });
    }
    return out;
  } finally {
    await q.close();
  }
}

// Creating rollouts (and rollbacks), and reading their progress.
import { timestampedId } from '../fleet/ids-and-durations.js';
import type { Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { JobTarget, MutationOperation } from '../fleet/job.js';
import { DEFAULT_PREFIX } from '../fleet/keys.js';
import { RunStore } from '../fleet/run-store.js';
import type { MutationSpec } from '../workers/ops/mutation-spec.js';
import { auditEntryJson } from './audit.js';
import { withStartLock } from './start-lock.js';
import { CONTROL_QUEUE, addGateJob, addWaveJob, controlStep, releaseHeld, waveResults, type ControlJobData, type WaveResult } from './control.js';
import { noRollout, RolloutStore, TERMINAL, type RolloutHeader, type RolloutRecord, type RolloutState } from './store.js';
import { waveBounds } from './waves.js';
import { clashWhat, overlapping, RolloutOverlapError } from './overlap.js';
import { openQueue } from '../fleet/queue.js';

export interface RolloutPlan {
  operation: MutationOperation;
  spec: MutationSpec;
  specByMiner?: Record<string, MutationSpec>;
  targets: JobTarget[];
  inventoryDigest: string;
  waves: number[];
  maxFailureRate: number;
  minSample: number;
  pauseBetweenMs: number;
  maxInFlightPerSite?: number;
  startAtMs?: number;
  actor: string;
  rollbackOf?: string;
  /** A rollback of part of what `rollbackOf` changed: the selection that picked it (`--site "site-b"`). */
  rollbackOnly?: string;
  timeoutMs?: number;
  /** A deterministic id (a scheduled tick's): starting it twice starts it once. */
  rolloutId?: string;
  /** Start even though an unfinished rollout changes the same setting on some of these miners (or one of the two reboots). */
  allowOverlap?: boolean;
  /** Sites (`*` = all) whose miners must be reached over TLS (never in plaintext). */
  tlsSites?: string[];
}

export interface RolloutReport {
  rolloutId: string;
  state: RolloutState;
  reason?: string;
  operation: string;
  /** When its first wave starts (`--at`), while it is scheduled. */
  startAt?: string;
  /** The rollout this one rolls back. */
  rollbackOf?: string;
  /** A rollback of part of what it changed: the selection (`--site "site-b"`). */
  rollbackOnly?: string;
  /** While running between waves: when the next wave starts (--pause-between after the last one ended). */
  nextWaveAt?: string;
  /** While paused: the wave whose start came during the pause (it starts on `resume`). */
  heldWave?: number;
  /** A step that failed and waits to be tried again (CONTROL_RETRY): what, how many attempts, the error. */
  retrying?: { step: string; attemptsMade: number; attempts: number; error: string };
  /** Each wave; `changes`: of its OK miners, how many the change was applied to, and found already so. */
  waves: (Omit<WaveResult, 'changes'> & { changes?: WaveResult['changes'] })[];
  counts: Record<string, number>;
}

/** Distinct values an audit entry lists at most (pools templated per miner differ on every miner). */
export const AUDIT_SPECS_MAX = 10;

/**
 * Distinct values of a per-miner plan (most miners first), each with how many of the targets get it;
 * beyond {@link AUDIT_SPECS_MAX} values, the rest are counted in one `{ otherValues, miners }` entry.
 */
export function specCounts(
  targets: readonly JobTarget[],
  byMiner: Record<string, MutationSpec>,
  fallback: MutationSpec,
): ({ spec: MutationSpec; miners: number } | { otherValues: number; miners: number })[] {
  const counts = new Map<string, { spec: MutationSpec; miners: number }>();
  for (const t of targets) {
    const spec = byMiner[t.minerId] ?? fallback;
    const key = JSON.stringify(spec);
    const entry = counts.get(key) ?? counts.set(key, { spec, miners: 0 }).get(key)!;
    entry.miners++;
  }
  const sorted = [...counts.values()].sort((a, b) => b.miners - a.miners);
  if (sorted.length <= AUDIT_SPECS_MAX) return sorted;
  const rest = sorted.slice(AUDIT_SPECS_MAX);
  return [...sorted.slice(0, AUDIT_SPECS_MAX), { otherValues: rest.length, miners: rest.reduce((n, e) => n + e.miners, 0) }];
}

export function newRolloutId(nowMs = Date.now()): string {
  return timestampedId('ro', nowMs);
}

function control(redis: Redis, prefix: string): Queue {
  return openQueue(CONTROL_QUEUE, redis, prefix);
}

export async function startRollout(redis: Redis, plan: RolloutPlan, prefix = DEFAULT_PREFIX): Promise<RolloutHeader> {
  const now = Date.now();
  const startAtMs = plan.startAtMs ?? now;
  const record: RolloutRecord = {
    rolloutId: plan.rolloutId ?? newRolloutId(now),
    operation: plan.operation,
    spec: plan.spec,
    ...(plan.specByMiner ? { specByMiner: plan.specByMiner } : {}),
    targets: plan.targets,
    inventoryDigest: plan.inventoryDigest,
    waveEnds: waveBounds(plan.targets.length, plan.waves),
    waves: plan.waves,
    maxFailureRate: plan.maxFailureRate,
    minSample: plan.minSample,
    pauseBetweenMs: plan.pauseBetweenMs,
    ...(plan.maxInFlightPerSite ? { maxInFlightPerSite: plan.maxInFlightPerSite } : {}),
    startAtMs,
    createdAt: new Date(now).toISOString(),
    actor: plan.actor,
    ...(plan.rollbackOf ? { rollbackOf: plan.rollbackOf } : {}),
    ...(plan.rollbackOnly ? { rollbackOnly: plan.rollbackOnly } : {}),
    ...(plan.timeoutMs ? { timeoutMs: plan.timeoutMs } : {}),
    ...(plan.tlsSites?.length ? { tlsSites: plan.tlsSites } : {}),
  };
  const audit = auditEntryJson({
    actor: plan.actor,
    action: plan.rollbackOf ? 'rollout.rollback' : 'rollout.start',
    subject: record.rolloutId,
    targetDigest: plan.inventoryDigest,
    details: {
      operation: plan.operation,
      // A rollback restores each miner's own value: one miner's spec would misstate what it writes.
      ...(plan.specByMiner ? { restores: specCounts(plan.targets, plan.specByMiner, plan.spec) } : { spec: plan.spec }),
      miners: plan.targets.length,
      waves: plan.waves,
      startAt: new Date(startAtMs).toISOString(),
      ...(plan.rollbackOf ? { rollbackOf: plan.rollbackOf } : {}),
      ...(plan.rollbackOnly ? { rollbackOnly: plan.rollbackOnly } : {}),
      ...(plan.tlsSites?.length ? { tlsSites: plan.tlsSites } : {}),
    },
  });
  const store = new RolloutStore(redis, prefix);
  // The check and the record under one lock: two starts at once would both pass the check.
  return withStartLock(redis, prefix, async () => {
    const clash = plan.allowOverlap ? undefined : await overlapping(store, plan);
    if (clash && !(await store.get(record.rolloutId))) {
      throw new RolloutOverlapError(
        `rollout ${clash.rolloutId} (${clash.operation}, ${clash.state}) ${clashWhat(clash, plan.operation, `these ${plan.targets.length} miners`)}: ` +
          `wait for it to end, stop it (bos-fleet rollout abort ${clash.rolloutId}), or pass --allow-overlap`,
      );
    }
    // The job that starts the first wave goes in before the record: a start cut short between the two
    // (Ctrl-C, a worker's tick killed) then never leaves a rollout `running` with nothing to start it.
    // The job waits for a record that is not there yet (see createControlProcessor); its id makes it
    // one job however often the same rollout is started (a tick delivered twice).
    const q = control(redis, prefix);
    try {
      await addWaveJob(q, record.rolloutId, 0, startAtMs - now);
    } finally {
      await q.close();
    }
    if (!(await store.create(record, startAtMs > now ? 'scheduled' : 'running', audit))) {
      return (await store.get(record.rolloutId)) ?? record; // already started (a tick delivered twice)
    }
    return record;
  });
}

/** The rollout's step (a wave start, a gate) that failed and waits to be tried again, if any. */
async function retryingStep(redis: Redis, rolloutId: string, prefix: string): Promise<RolloutReport['retrying']> {
  const q = control(redis, prefix);
  try {
    for (const id of (await q.getRanges(['delayed'], 0, -1)).filter((jobId) => jobId.startsWith(`${rolloutId}.`))) {
      const job = (await q.getJob(id)) as Job<ControlJobData> | undefined;
      if (job && job.attemptsMade > 0 && job.failedReason) return { step: controlStep(job), attemptsMade: job.attemptsMade, attempts: job.opts.attempts ?? 1, error: job.failedReason };
    }
    return undefined;
  } finally {
    await q.close();
  }
}

export async function rolloutReport(redis: Redis, rolloutId: string, prefix = DEFAULT_PREFIX): Promise<RolloutReport | undefined> {
  const store = new RolloutStore(redis, prefix);
  const rec = await store.get(rolloutId);
  const st = await store.status(rolloutId);
  if (!rec || !st) return undefined;
  const runs = new RunStore(redis, prefix);
  const waves = await waveResults(runs, rec);
  const counts: Record<string, number> = {};
  for (const w of waves) for (const [code, n] of Object.entries(w.counts)) counts[code] = (counts[code] ?? 0) + n;
  const between = st.state === 'running' && st.waveEndedAtMs !== undefined && st.wave + 1 < rec.waveEnds.length;
  const retrying = TERMINAL.includes(st.state) ? undefined : await retryingStep(redis, rolloutId, prefix);
  return {
    rolloutId,
    state: st.state,
    ...(st.reason ? { reason: st.reason } : {}),
    operation: rec.operation,
    ...(st.state === 'scheduled' ? { startAt: new Date(rec.startAtMs).toISOString() } : {}),
    ...(rec.rollbackOf ? { rollbackOf: rec.rollbackOf } : {}),
    ...(rec.rollbackOnly ? { rollbackOnly: rec.rollbackOnly } : {}),
    ...(between ? { nextWaveAt: new Date((st.waveEndedAtMs ?? 0) + rec.pauseBetweenMs).toISOString() } : {}),
    ...(retrying ? { retrying } : {}),
    ...(st.state === 'paused' && st.heldWave !== undefined ? { heldWave: st.heldWave } : {}),
    waves,
    counts,
  };
}

/** `reason` (an abort's or a pause's) is kept on the rollout, shown by its status, and goes to the audit entry. */
export async function changeRolloutState(redis: Redis, rolloutId: string, action: 'pause' | 'resume' | 'abort', actor: string, prefix = DEFAULT_PREFIX, reason?: string): Promise<RolloutState> {
  const store = new RolloutStore(redis, prefix);
  const rec = await store.get(rolloutId);
  if (!rec) throw noRollout(rolloutId);
  const moves: Record<typeof action, [RolloutState[], RolloutState]> = {
    pause: [['running', 'scheduled'], 'paused'],
    resume: [['paused', 'failed'], 'running'],
    // A failed rollout (a step that kept failing) can be taken up again, or stopped for good.
    abort: [['running', 'paused', 'scheduled', 'failed'], 'aborted'],
  };
  const [from, to] = moves[action];
  // A failed rollout did not hold its miners: another rollout of its setting may have started on them
  // since. Checked and resumed under the start lock, as a start is (see withStartLock).
  const move = async () => {
    const before = await store.status(rolloutId);
    if (action === 'resume' && before?.state === 'failed') {
      const clash = await overlapping(store, { ...rec, targets: (await store.members(rolloutId))?.targets ?? [] });
      if (clash) {
        throw new RolloutOverlapError(
          `rollout ${clash.rolloutId} (${clash.operation}, ${clash.state}) ${clashWhat(clash, rec.operation, "this rollout's miners", true)}: ` +
            `let it end or stop it (bos-fleet rollout abort ${clash.rolloutId}) before resuming ${rolloutId}, or abort ${rolloutId}`,
        );
      }
    }
    // A resumed rollout runs again: why it stopped (it failed) is forgotten.
    const audit = auditEntryJson({ actor, action: `rollout.${action}`, subject: rolloutId, targetDigest: rec.inventoryDigest, ...(reason ? { details: { reason } } : {}) });
    if (!(await store.transition(rolloutId, from, to, { audit, ...(reason && action !== 'resume' ? { reason } : { clearReason: action === 'resume' }) }))) {
      const st = await store.status(rolloutId);
      throw new Error(`rollout ${rolloutId} is ${st?.state}: cannot ${action} it`);
    }
  };
  await (action === 'resume' ? withStartLock(redis, prefix, move) : move());
  // Miner jobs held while paused (they wait longer the longer the pause lasts) go now: on resume to
  // be changed, on abort to be cancelled.
  if (action !== 'pause') await releaseHeld(redis, rolloutId, prefix);
  let state = to;
  if (action === 'resume') {
    const st = await store.status(rolloutId);
    const q = control(redis, prefix);
    // A wave whose start came during the pause starts now; otherwise the gate of the current wave
    // decides again: it advances if the wave is done (once --pause-between has passed since), or waits.
    const held = await store.takeHeldWave(rolloutId);
    if (held !== undefined) await addWaveJob(q, rolloutId, held, 0, `.r${Date.now()}`);
    else if ((st?.wave ?? -1) < 0) {
      // Paused before its --at time, it is scheduled again (its first wave starts then, not now).
      if (rec.startAtMs > Date.now() && (await store.transition(rolloutId, ['running'], 'scheduled'))) state = 'scheduled';
      await addWaveJob(q, rolloutId, 0, Math.max(0, rec.startAtMs - Date.now()), `.r${Date.now()}`);
    } else await addGateJob(q, rolloutId, st?.wave ?? 0, `r${Date.now()}`, 0);
    await q.close();
  }
  return state;
}

// Drives rollouts with BullMQ control jobs: a `wave` job enqueues one wave's miner jobs (idempotent:
// deterministic job ids), `gate` jobs wait for every outcome of the wave, then apply the failure gate
// and either start the next wave (after --pause-between), complete, or halt.
import { DelayedError, Queue, UnrecoverableError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { redisNowMs } from '../redis/clock.js';
import { createHash } from 'node:crypto';
import { RunStore } from '../fleet/run-store.js';
import { operationOf } from '../workers/ops/mutation-spec.js';
import { enqueueRun, type EnqueueOptions } from '../producer/enqueue.js';
import { lostJobsText, noneIfVanished, requeueLost } from '../producer/lost-jobs.js';
import { STILL_CHECK_MS } from '../producer/wait.js';
import type { JobTarget } from '../fleet/job.js';
import { promoteJobs, rewakeStale, wakeParked } from './site-limit.js';
import { allJobQueues, closeHandOnQueues } from '../fleet/hand-on-queues.js';
import { DEFAULT_PREFIX, QUEUE_NAME } from '../fleet/keys.js';
import { openQueue } from '../fleet/queue.js';
import { auditEntryJson } from './audit.js';
import { RolloutStore, TERMINAL, waveRunId, type RolloutHeader } from './store.js';

export const CONTROL_QUEUE = 'control';
const GATE_POLL_MS = 300;
/** How long a first wave's job waits for its rollout's record (written just after it) before giving up. */
const RECORD_WAIT_MS = 10 * 60_000;

/**
 * A control job that throws (Redis too full to take a wave's jobs, say) is tried again 1 s, 2 s,
 * 4 s … later: 12 attempts over about 34 minutes. Then the rollout is failed, saying why.
 */
export const CONTROL_RETRY = { attempts: 12, backoff: { type: 'exponential', delay: 1_000 } };

export interface ControlJobData {
  rolloutId: string;
  wave: number;
  seq?: number;
  /** A gate's: the wave's outcomes at the gate before, and since when there have been that many. */
  still?: { done: number; sinceMs: number };
}

/** Where wave `wave` starts and ends (exclusive) in the rollout's targets. */
function waveRange(rec: Pick<RolloutHeader, 'waveEnds'>, wave: number): [number, number] {
  return [wave === 0 ? 0 : (rec.waveEnds[wave - 1] ?? 0), rec.waveEnds[wave] ?? 0];
}

export function waveSize(rec: Pick<RolloutHeader, 'waveEnds'>, wave: number): number {
  const [start, end] = waveRange(rec, wave);
  return end - start;
}

/** A wave's result: its miners, their outcomes by code and, of its OK ones, what the change did ({applied, unchanged}). */
export interface WaveResult {
  index: number;
  miners: number;
  counts: Record<string, number>;
  changes: Record<string, number>;
}

/** How many of a wave's miners have their outcome: each outcome counts once under its code. */
export function waveOutcomes(w: Pick<WaveResult, 'counts'> | undefined): number {
  return Object.values(w?.counts ?? {}).reduce((a, b) => a + b, 0);
}

/** The results of the rollout's first `count` waves (a wave not started has empty counts). */
export async function waveResults(runs: RunStore, rec: Pick<RolloutHeader, 'rolloutId' | 'waveEnds'>, count = rec.waveEnds.length): Promise<WaveResult[]> {
  const waves: WaveResult[] = [];
  for (let w = 0; w < count; w++) {
    const { counts, changes } = await runs.getCounts(waveRunId(rec.rolloutId, w));
    waves.push({ index: w, miners: waveSize(rec, w), counts, changes });
  }
  return waves;
}

/**
 * Adds the job that starts `wave` after `delayMs`. Its id makes a second add a no-op while the first
 * is pending; one that already ran without starting the wave (it came while the rollout was paused,
 * under a version before held waves) does not block a new one: startWave ignores a wave started.
 */
export async function addWaveJob(control: Queue, rolloutId: string, wave: number, delayMs: number, suffix = ''): Promise<void> {
  let jobId = `${rolloutId}.wave.${wave}${suffix}`;
  const state = await control.getJobState(jobId);
  if (state === 'completed' || state === 'failed') jobId += `.a${Date.now()}`;
  await control.add('wave', { rolloutId, wave } satisfies ControlJobData, { jobId, delay: Math.max(0, delayMs), ...CONTROL_RETRY, removeOnComplete: { age: 86_400 }, removeOnFail: { age: 7 * 86_400 } });
}

export async function addGateJob(control: Queue, rolloutId: string, wave: number, seq: number | string, delayMs = GATE_POLL_MS, still?: ControlJobData['still']): Promise<void> {
  await control.add('gate', { rolloutId, wave, seq: typeof seq === 'number' ? seq : 0, ...(still ? { still } : {}) } satisfies ControlJobData, {
    jobId: `${rolloutId}.gate.${wave}.${seq}`,
    delay: delayMs,
    ...CONTROL_RETRY,
    removeOnComplete: true,
    removeOnFail: { age: 86_400 },
  });
}

export function createControlProcessor(deps: { redis: Redis; prefix: string; jobs: Queue; control: Queue; stillCheckMs?: number }) {
  const stillCheckMs = deps.stillCheckMs ?? STILL_CHECK_MS;
  const store = new RolloutStore(deps.redis, deps.prefix);
  const runs = new RunStore(deps.redis, deps.prefix);

  /** The miners of `wave` and how its jobs are enqueued (their params are the wave run's record's). */
  async function waveRun(rec: RolloutHeader, wave: number): Promise<{ inventory: { file: string; targets: JobTarget[]; digest: string }; opts: EnqueueOptions }> {
    const members = await store.members(rec.rolloutId);
    if (!members) throw new UnrecoverableError(`rollout ${rec.rolloutId} has no miners recorded`);
    const { specByMiner } = members;
    const targets = members.targets.slice(...waveRange(rec, wave));
    const digest = createHash('sha256').update(JSON.stringify(targets)).digest('hex');
    return {
      inventory: { file: `rollout ${rec.rolloutId} wave ${wave}`, targets, digest },
      opts: {
        operation: rec.operation,
        runId: waveRunId(rec.rolloutId, wave),
        ...(specByMiner ? { paramsFor: (t: JobTarget) => ({ mutation: specByMiner[t.minerId] ?? rec.spec }), operationFor: (t: JobTarget) => operationOf(specByMiner[t.minerId] ?? rec.spec) } : {}),
        ...(rec.timeoutMs ? { timeoutMs: rec.timeoutMs } : {}),
        ...(rec.tlsSites ? { tlsSites: rec.tlsSites } : {}),
      },
    };
  }

  /**
   * The wave's miners whose jobs Redis lost (a crash of its host, a failover to a replica behind) go
   * in again, or the wave would wait for them for ever. A change job run again is safe: its journal
   * and read-back find a change made earlier, and a reboot is done once the miner booted after the
   * wave asked (change-job.ts, mutation-kinds.ts).
   */
  async function requeueWave(rec: RolloutHeader, wave: number): Promise<void> {
    const { inventory, opts } = await waveRun(rec, wave);
    const lost = await requeueLost(deps.jobs, runs, waveRunId(rec.rolloutId, wave), inventory, opts).catch(noneIfVanished);
    if (lost) console.error(`worker: rollout ${rec.rolloutId} wave ${wave}: ${lostJobsText(lost, inventory.targets.length)}`);
  }

  async function startWave(rec: RolloutHeader, wave: number): Promise<void> {
    const st = await store.status(rec.rolloutId);
    if (!st || TERMINAL.includes(st.state)) return;
    // Its time came while paused: `resume` starts it (unless the rollout was resumed meanwhile).
    if (st.state === 'paused' && (await store.holdWave(rec.rolloutId, wave))) return;
    // Started already: a wave job delivered again, or added again by a resume.
    if (st.wave >= wave) return;
    if (st.state === 'scheduled') await store.transition(rec.rolloutId, ['scheduled'], 'running', { audit: auditEntryJson({ actor: rec.actor, action: 'rollout.running', subject: rec.rolloutId, targetDigest: rec.inventoryDigest }) });
    // A reboot is asked for when its wave starts, not when the rollout was started (with --at or
    // --pause-between, hours before): a miner that restarted by itself in between is still rebooted.
    // On Redis's clock, which the workers that read the miners' boot times share (redis/clock.ts).
    const spec = rec.spec.kind === 'reboot' ? { ...rec.spec, notBeforeMs: await redisNowMs(deps.redis) } : rec.spec;
    const { inventory, opts } = await waveRun(rec, wave);
    await enqueueRun(deps.jobs, runs, inventory, { ...opts, params: { rolloutId: rec.rolloutId, wave, mutation: spec, ...(rec.maxInFlightPerSite ? { maxInFlightPerSite: rec.maxInFlightPerSite } : {}) } });
    // The gate first: a worker dying in between leaves the wave unmarked, and its job, delivered
    // again, makes both again (idempotent); marked first, it would leave a wave without a gate.
    await addGateJob(deps.control, rec.rolloutId, wave, 0);
    await store.setWave(rec.rolloutId, wave);
  }

  /**
   * Halts the rollout before its wave ends once the failures so far exceed the gate over every miner
   * of the waves up to this one: however the wave's other miners end, its gate would halt the rollout,
   * so they are not changed (their jobs end CANCELLED). A wave of 40,000 that fails half its miners
   * stops after a few thousand, not at its end.
   */
  async function haltedEarly(rec: RolloutHeader, wave: number, waves: WaveResult[], failed: number, toGo: number): Promise<boolean> {
    const all = waves.reduce((n, w) => n + w.miners, 0);
    if (all < rec.minSample || failed / all <= rec.maxFailureRate) return false;
    const reason =
      `wave ${wave}: failure rate already ${((failed / all) * 100).toFixed(1)}% (${failed} failed of the ${all} miners up to this wave) above the ` +
      `${(rec.maxFailureRate * 100).toFixed(1)}% gate, even if the ${toGo} still to go all succeed: it stops here (miners being changed finish; the others are left unchanged)`;
    const audit = auditEntryJson({ actor: rec.actor, action: 'rollout.halted', subject: rec.rolloutId, targetDigest: rec.inventoryDigest, details: { reason, waves } });
    if (!(await store.transition(rec.rolloutId, ['running', 'paused'], 'halted', { reason, audit }))) return false;
    // Its miners waiting out a retry backoff, parked for a site slot or held by a pause end now.
    await releaseHeld(deps.redis, rec.rolloutId, deps.prefix);
    return true;
  }

  async function gate(rec: RolloutHeader, wave: number, seq: number, still: ControlJobData['still']): Promise<void> {
    const st = await store.status(rec.rolloutId);
    if (!st || TERMINAL.includes(st.state)) return;
    // The outcomes of every wave up to this one, read once.
    const waves = await waveResults(runs, rec, wave + 1);
    const doneAll = waves.reduce((n, w) => n + waveOutcomes(w), 0);
    const failedAll = doneAll - waves.reduce((n, w) => n + (w.counts['OK'] ?? 0), 0);
    const done = waveOutcomes(waves[wave]);
    const total = waveSize(rec, wave);
    if (done < total) {
      if (await haltedEarly(rec, wave, waves, failedAll, total - done)) return;
      // Wakes parked miners wherever a site has free slots, and makes again a wakeup cut short (its
      // worker died, or its job was not delayed yet).
      if (rec.maxInFlightPerSite) {
        for (const key of await deps.redis.smembers(store.parkedSitesKey(rec.rolloutId))) {
          await rewakeStale(deps.redis, deps.jobs, key);
          await wakeParked(deps.redis, deps.jobs, key, rec.maxInFlightPerSite);
        }
      }
      // No new outcome for a while: are its miners' jobs still there?
      let sinceMs = still?.done === done ? still.sinceMs : Date.now();
      if (Date.now() - sinceMs >= stillCheckMs) {
        await requeueWave(rec, wave);
        sinceMs = Date.now();
      }
      return addGateJob(deps.control, rec.rolloutId, wave, seq + 1, GATE_POLL_MS, { done, sinceMs });
    }
    // Every miner of the wave has an outcome: gate on the failures of all finished waves.
    const rate = doneAll ? failedAll / doneAll : 0;
    // The first time this wave is seen ended (this gate may run again: after a resume, or delivered
    // twice): its result goes to the audit log once, and the next wave waits --pause-between from then.
    const entry = auditEntryJson({ actor: rec.actor, action: 'rollout.wave', subject: rec.rolloutId, targetDigest: rec.inventoryDigest, details: { wave, counts: waves[wave]?.counts, changes: waves[wave]?.changes, failureRate: rate } });
    const endedAtMs = await store.markWaveEnded(rec.rolloutId, wave, entry);
    if (doneAll >= rec.minSample && rate > rec.maxFailureRate) {
      const reason = `wave ${wave}: failure rate ${(rate * 100).toFixed(1)}% (${failedAll}/${doneAll}) above the ${(rec.maxFailureRate * 100).toFixed(1)}% gate`;
      await store.transition(rec.rolloutId, ['running', 'paused'], 'halted', { reason, audit: auditEntryJson({ actor: rec.actor, action: 'rollout.halted', subject: rec.rolloutId, targetDigest: rec.inventoryDigest, details: { reason, waves } }) });
      return;
    }
    if (wave === rec.waveEnds.length - 1) {
      await store.transition(rec.rolloutId, ['running'], 'completed', { audit: auditEntryJson({ actor: rec.actor, action: 'rollout.completed', subject: rec.rolloutId, targetDigest: rec.inventoryDigest, details: { waves } }) });
      return;
    }
    if (st.state === 'paused') return; // `rollout resume` re-runs this gate
    await addWaveJob(deps.control, rec.rolloutId, wave + 1, endedAtMs + rec.pauseBetweenMs - Date.now());
  }

  return async (job: Job<ControlJobData>, token?: string): Promise<void> => {
    const rec = await store.get(job.data.rolloutId);
    if (!rec) {
      // A first wave's job goes in just before its rollout's record (see startRollout) and may come
      // first: it looks again shortly, for a while. Past that, its start was cut short before the
      // record was written, or the rollout was deleted since: there is nothing to start.
      const dueAtMs = job.timestamp + (job.opts.delay ?? 0);
      if (job.name === 'wave' && token && Date.now() < dueAtMs + RECORD_WAIT_MS) {
        await job.moveToDelayed(Date.now() + Math.min(5_000, Math.max(50, (Date.now() - dueAtMs) / 10)), token);
        throw new DelayedError();
      }
      return;
    }
    if (job.name === 'wave') await startWave(rec, job.data.wave);
    else if (job.name === 'gate') await gate(rec, job.data.wave, job.data.seq ?? 0, job.data.still);
  };
}

/** What a control job was doing, for a rollout's status and failure reason. */
export function controlStep(job: Pick<Job<ControlJobData>, 'name' | 'data'>): string {
  return job.name === 'wave' ? `wave ${job.data.wave} could not start` : `the gate of wave ${job.data.wave} failed`;
}

/**
 * A control job that failed for good (its attempts used, or an unrecoverable error: the caller asks
 * isFinalFailure) fails its rollout, with the step and the error as the reason: otherwise the rollout
 * would say `running` for ever with nothing carrying it on. `rollout resume` takes it up again from there.
 */
export async function failRollout(redis: Redis, prefix: string, job: Job<ControlJobData>, err: Error): Promise<boolean> {
  if (!job.data?.rolloutId) return false;
  const store = new RolloutStore(redis, prefix);
  const rec = await store.get(job.data.rolloutId);
  if (!rec) return false;
  const reason = `${controlStep(job)}: ${err.message} (after ${job.attemptsMade} attempt${job.attemptsMade === 1 ? '' : 's'}; \`bos-fleet rollout resume ${rec.rolloutId}\` takes it up again)`;
  return store.transition(rec.rolloutId, ['scheduled', 'running', 'paused'], 'failed', { reason, audit: auditEntryJson({ actor: rec.actor, action: 'rollout.failed', subject: rec.rolloutId, targetDigest: rec.inventoryDigest, details: { reason } }) });
}

/**
 * Moves the rollout's delayed miner jobs (held while it was paused, or waiting out a retry backoff)
 * back to the queue at once. Returns how many.
 */
export async function releaseHeld(redis: Redis, rolloutId: string, prefix = DEFAULT_PREFIX): Promise<number> {
  const queue = openQueue(QUEUE_NAME, redis, prefix);
  try {
    // Job ids are `<rolloutId>-w<wave>.<minerId>`: only this rollout's, in every queue a job can be in
    // (promoteJobs finds each one in its own queue).
    const ids: string[] = [];
    for (const q of await allJobQueues(queue)) ids.push(...(await q.getRanges(['delayed'], 0, -1)).filter((id) => id.startsWith(`${rolloutId}-w`)));
    return await promoteJobs(queue, ids);
  } finally {
    await closeHandOnQueues(queue);
    await queue.close();
  }
}

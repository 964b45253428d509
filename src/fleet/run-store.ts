// Runs and outcomes in Redis: the run record, the list of runs, and one outcome per miner per run
// (written at most once, so a job that runs again after a stall never doubles the counts).
import { callToken, timestampedId } from './ids-and-durations.js';
import type { Redis } from 'ioredis';
import { keys, type Keys } from './keys.js';
import { runsBeyond, type RetentionPolicy } from './retention.js';
import { byMinerId, SummaryBuilder, type Outcome, type RunSummary } from './outcome.js';
import { JOURNAL_UNLESS_STOPPED, type StopGuard } from './journal.js';
import { CREATE_RUN, WRITE_OUTCOMES } from './run-scripts.js';

export interface RunRecord {
  runId: string;
  operation: string;
  params: Record<string, unknown>;
  inventoryFile: string;
  inventoryDigest: string;
  createdAt: string;
  createdAtMs: number;
  total: number;
  /** Set when Redis refused part of the run's jobs: the inventory's size (total is what was enqueued). */
  inventoryTotal?: number;
  /** Why the run was cut short at enqueue. */
  enqueueError?: string;
  /**
   * Whose poll runs these are, for retention: a schedule's id for its ticks' runs; absent for
   * `bos-fleet poll`'s own. Each series keeps its own newest runs.
   */
  series?: string;
  /** The retention of the series as of this run (its newest run's applies to the whole series). */
  retention?: RetentionPolicy;
}

export function newRunId(nowMs = Date.now()): string {
  return timestampedId('run', nowMs);
}

type WithOutcomeCommand = Redis & {
  bosFleetWriteOutcomes(outcomes: string, counts: string, ...minerJsonCode: string[]): Promise<number[]>;
};

interface PendingOutcome {
  outcome: Outcome;
  json: string;
  resolve(written: boolean): void;
  reject(err: unknown): void;
}

/** Outcomes of one run sent in one script call at most (bounds the time Redis spends in it). */
export const OUTCOME_BATCH_MAX = 256;

export class RunStore {
  readonly k: Keys;
  private readonly redisCmd: WithOutcomeCommand;
  private pending: PendingOutcome[] = [];

  constructor(
    readonly redis: Redis,
    prefix?: string,
  ) {
    this.k = keys(prefix);
    // EVALSHA after the first call instead of sending the script with every outcome.
    if (!('bosFleetWriteOutcomes' in redis)) redis.defineCommand('bosFleetWriteOutcomes', { numberOfKeys: 2, lua: WRITE_OUTCOMES });
    this.redisCmd = redis as WithOutcomeCommand;
  }

  /** Stores the record unless the run exists; returns the stored one (the first wins). */
  async createRun(record: RunRecord): Promise<{ record: RunRecord; created: boolean }> {
    const created = (await this.redis.eval(CREATE_RUN, 2, this.k.run(record.runId), this.k.runs, JSON.stringify(record), String(record.createdAtMs), record.runId, callToken())) === 1;
    const stored = await this.getRun(record.runId);
    if (!stored) throw new Error(`run ${record.runId} vanished while being created`);
    return { record: stored, created };
  }

  /**
   * Deletes finished poll runs beyond their series' retention (record, outcomes, counts): all but the
   * newest `keepRuns` poll runs of the series, and those older than `keepForMs`. `series` (a
   * schedule's id; '' for `bos-fleet poll`'s runs) is the caller's, which `policy` is for; every
   * other series keeps what its newest run's retention says, so a schedule's `--keep-runs 3` never
   * deletes another schedule's runs or an operator's own poll. A run still in progress is never
   * deleted (its workers would write into it), nor a run of a change (a rollback reads its
   * outcomes). Returns the deleted run ids.
   */
  async pruneRuns(policy: RetentionPolicy, nowMs = Date.now(), series = ''): Promise<string[]> {
    const ids = await this.redis.zrevrange(this.k.runs, 0, -1); // newest first
    if (ids.length === 0) return [];
    const read = this.redis.pipeline();
    for (const id of ids) read.hget(this.k.run(id), 'record').hget(this.k.counts(id), '_done');
    const replies = (await read.exec()) ?? [];
    const runs = ids.flatMap((id, i) => {
      const [recordErr, raw] = replies[2 * i] ?? [];
      const [, done] = replies[2 * i + 1] ?? [];
      return recordErr || typeof raw !== 'string' ? [] : [{ id, record: JSON.parse(raw) as RunRecord, done: Number(done ?? 0) }];
    });
    const doomed = runsBeyond(runs, policy, series, nowMs);
    await this.deleteRuns(doomed);
    return doomed;
  }

  /** Deletes runs whole: record, outcomes, counts, journal, kept miners. */
  async deleteRuns(ids: readonly string[]): Promise<void> {
    if (ids.length === 0) return;
    const del = this.redis.multi();
    // UNLINK: Redis frees a 100,000-field hash in the background instead of blocking on it.
    for (const id of ids) del.unlink(this.k.run(id), this.k.outcomes(id), this.k.counts(id), this.k.journal(id), this.k.kept(id)).zrem(this.k.runs, id);
    await del.exec();
  }

  /**
   * Records a miner's state from before a change, just before the change is written to it; an
   * earlier record wins and is returned. A job that runs again after its worker died between the
   * write and the outcome (or whose outcome Redis refused) so still reports the change as applied,
   * with the state from before it — what a rollback restores — instead of "unchanged".
   *
   * With `unless`, nothing is recorded (and the change must not be written) when the rollout's state
   * is one of `unless.states` by then: checked and recorded in one step, so a rollback planned after
   * an abort finds in the journal every miner that may still be written to, and no miner read before
   * the abort is written after it.
   */
  async journalBefore(runId: string, minerId: string, before: unknown, unless?: StopGuard): Promise<{ before: unknown } | { stopped: string }> {
    const keys = [this.k.journal(runId), ...(unless ? [unless.stateKey] : [])];
    const [written, value] = (await this.redis.eval(JOURNAL_UNLESS_STOPPED, keys.length, ...keys, minerId, JSON.stringify({ before: before ?? null }), ...(unless?.states ?? []))) as [number, string];
    return written ? (JSON.parse(value) as { before: unknown }) : { stopped: value };
  }

  /** The `before` an earlier attempt of this run recorded for the miner, if any. */
  async journaled(runId: string, minerId: string): Promise<{ before: unknown } | undefined> {
    const raw = await this.redis.hget(this.k.journal(runId), minerId);
    return raw ? (JSON.parse(raw) as { before: unknown }) : undefined;
  }

  /** Marks every job of the run as enqueued (the producer's last step). */
  async markEnqueued(runId: string): Promise<void> {
    await this.redis.hset(this.k.run(runId), 'enqueued', '1');
  }

  /** Marks the run cancelled: a producer still enqueuing it stops at its next chunk. */
  async markCancelled(runId: string): Promise<void> {
    await this.redis.hset(this.k.run(runId), 'cancelled', String(Date.now()));
  }

  /** Whether the run was fully enqueued, and whether it was cancelled. */
  async enqueueState(runId: string): Promise<{ enqueued: boolean; cancelled: boolean }> {
    const [enqueued, cancelled] = await this.redis.hmget(this.k.run(runId), 'enqueued', 'cancelled');
    return { enqueued: enqueued === '1', cancelled: cancelled !== null };
  }

  /** Every journaled `before` of a run, by miner. */
  async journalEntries(runId: string): Promise<Map<string, unknown>> {
    const raw = await this.redis.hgetall(this.k.journal(runId));
    return new Map(Object.entries(raw).map(([minerId, json]) => [minerId, (JSON.parse(json) as { before: unknown }).before]));
  }

  /** The miners of a run that have an outcome. */
  outcomeMinerIds(runId: string): Promise<string[]> {
    return this.redis.hkeys(this.k.outcomes(runId));
  }

  /** Cuts a run whose enqueue Redis refused part-way down to the miners enqueued, so it can finish. */
  async closeRunAt(runId: string, enqueued: number, reason: string): Promise<void> {
    const record = await this.getRun(runId);
    if (!record) throw new Error(`no run "${runId}"`);
    const cut: RunRecord = { ...record, total: enqueued, inventoryTotal: record.inventoryTotal ?? record.total, enqueueError: reason };
    await this.redis.hset(this.k.run(runId), 'record', JSON.stringify(cut));
  }

  /**
   * A run cut short (closeRunAt) counts its whole inventory again: it is being enqueued again in
   * full (a wave start or a schedule tick tried again once Redis has room). Unless it was cancelled.
   */
  async reopenRun(record: RunRecord): Promise<RunRecord> {
    if (record.inventoryTotal === undefined || (await this.enqueueState(record.runId)).cancelled) return record;
    const { inventoryTotal, enqueueError: _e, ...rest } = record;
    const whole: RunRecord = { ...rest, total: inventoryTotal };
    await this.redis.hset(this.k.run(record.runId), 'record', JSON.stringify(whole));
    return whole;
  }

  async getRun(runId: string): Promise<RunRecord | undefined> {
    const raw = await this.redis.hget(this.k.run(runId), 'record');
    return raw ? (JSON.parse(raw) as RunRecord) : undefined;
  }

  async listRuns(limit = 50): Promise<RunRecord[]> {
    const ids = await this.redis.zrevrange(this.k.runs, 0, limit - 1);
    const runs = await Promise.all(ids.map((id) => this.getRun(id)));
    return runs.filter((r): r is RunRecord => r !== undefined);
  }

  /**
   * Writes the miner's outcome if it has none yet; false when one was already there. Resolves once
   * Redis has it. Outcomes written in the same turn of the event loop (jobs finishing together) go
   * to Redis in one script call per run: one round trip instead of one each.
   */
  writeOutcome(outcome: Outcome): Promise<boolean> {
    return new Promise((resolve, reject) => {
      this.pending.push({ outcome, json: JSON.stringify(outcome), resolve, reject });
      if (this.pending.length === 1) setImmediate(this.flushOutcomes);
    });
  }

  private readonly flushOutcomes = (): void => {
    const batch = this.pending;
    this.pending = [];
    const byRun = new Map<string, PendingOutcome[]>();
    for (const p of batch) {
      let group = byRun.get(p.outcome.runId);
      if (!group) byRun.set(p.outcome.runId, (group = []));
      group.push(p);
      if (group.length === OUTCOME_BATCH_MAX) {
        this.sendOutcomes(p.outcome.runId, group);
        byRun.delete(p.outcome.runId);
      }
    }
    for (const [runId, group] of byRun) this.sendOutcomes(runId, group);
  };

  private sendOutcomes(runId: string, group: PendingOutcome[]): void {
    const args: string[] = [];
    for (const p of group) args.push(p.outcome.minerId, p.json, p.outcome.code, changeOf(p.outcome));
    this.redisCmd.bosFleetWriteOutcomes(this.k.outcomes(runId), this.k.counts(runId), ...args).then(
      (written) => group.forEach((p, i) => p.resolve(written[i] === 1)),
      (err: unknown) => group.forEach((p) => p.reject(err)),
    );
  }

  async getOutcome(runId: string, minerId: string): Promise<Outcome | undefined> {
    const raw = await this.redis.hget(this.k.outcomes(runId), minerId);
    return raw ? (JSON.parse(raw) as Outcome) : undefined;
  }

  /**
   * A run's outcomes in miner-id order, `batch` at a time: a run of hundreds of thousands of miners is
   * read without holding all of it (HKEYS, then HMGET per batch).
   */
  async *outcomeBatches(runId: string, batch = 1_000): AsyncGenerator<Outcome[]> {
    const key = this.k.outcomes(runId);
    const ids = (await this.redis.hkeys(key)).sort(byMinerId);
    for (let i = 0; i < ids.length; i += batch) {
      const raws = await this.redis.hmget(key, ...ids.slice(i, i + batch));
      yield raws.filter((raw): raw is string => raw !== null).map((raw) => JSON.parse(raw) as Outcome);
    }
  }

  /** The run's summary, built from its outcomes batch by batch. */
  async summarize(record: RunRecord): Promise<RunSummary> {
    const builder = new SummaryBuilder(record.total, record.createdAtMs);
    for await (const batch of this.outcomeBatches(record.runId)) for (const o of batch) builder.add(o);
    return builder.build();
  }

  async getOutcomes(runId: string): Promise<Outcome[]> {
    const all = await this.redis.hvals(this.k.outcomes(runId));
    return all.map((raw) => JSON.parse(raw) as Outcome);
  }

  /**
   * A run's counts: miners with an outcome, and how many per code; for a change, how many of its OK
   * outcomes applied it and how many found it in place already (`changes`: {applied, unchanged}).
   */
  async getCounts(runId: string): Promise<{ done: number; counts: Record<string, number>; changes: Record<string, number> }> {
    const raw = await this.redis.hgetall(this.k.counts(runId));
    const counts: Record<string, number> = {};
    const changes: Record<string, number> = {};
    let done = 0;
    for (const [code, n] of Object.entries(raw)) {
      if (code === '_done') done = Number(n);
      else if (code.startsWith('_change:')) changes[code.slice('_change:'.length)] = Number(n);
      else counts[code] = Number(n);
    }
    return { done, counts, changes };
  }
}

/** What a change outcome did ('applied', 'unchanged', 'would-apply'), for its run's counts; '' for a poll or a failure. */
function changeOf(o: Outcome): string {
  const change = o.status === 'ok' ? (o.data as { change?: unknown } | undefined)?.change : undefined;
  return typeof change === 'string' ? change : '';
}

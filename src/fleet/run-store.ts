// Runs and outcomes in Redis: the run record, the list of runs, and one outcome per miner per run
// (written at most once, so a job that runs again after a stall never doubles the counts).
import { timestampedId } from './ids-and-durations.js';
import type { Redis } from 'ioredis';
import { keys, type Keys } from './keys.js';
import type { Outcome } from './outcome.js';

export interface RunRecord {
  runId: string;
  operation: string;
  params: Record<string, unknown>;
  inventoryFile: string;
  inventoryDigest: string;
  createdAt: string;
  createdAtMs: number;
  total: number;
}

export function newRunId(nowMs = Date.now()): string {
  return timestampedId('run', nowMs);
}

// HSETNX the outcome; only the first writer bumps the counters.
const WRITE_OUTCOME = `
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
  redis.call('HINCRBY', KEYS[2], '_done', 1)
  return 1
end
return 0`;

type WithOutcomeCommand = Redis & {
  bosFleetWriteOutcome(outcomes: string, counts: string, minerId: string, json: string, code: string): Promise<number>;
};

export class RunStore {
  readonly k: Keys;
  private readonly redisCmd: WithOutcomeCommand;

  constructor(
    readonly redis: Redis,
    prefix?: string,
  ) {
    this.k = keys(prefix);
    // EVALSHA after the first call instead of sending the script with every outcome.
    if (!('bosFleetWriteOutcome' in redis)) redis.defineCommand('bosFleetWriteOutcome', { numberOfKeys: 2, lua: WRITE_OUTCOME });
    this.redisCmd = redis as WithOutcomeCommand;
  }

  /** Stores the record unless the run exists; returns the stored one (the first wins). */
  async createRun(record: RunRecord): Promise<{ record: RunRecord; created: boolean }> {
    const created = (await this.redis.hsetnx(this.k.run(record.runId), 'record', JSON.stringify(record))) === 1;
    if (created) await this.redis.zadd(this.k.runs, 'NX', record.createdAtMs, record.runId);
    const stored = await this.getRun(record.runId);
    if (!stored) throw new Error(`run ${record.runId} vanished while being created`);
    return { record: stored, created };
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

  /** Writes the miner's outcome if it has none yet; false when one was already there. */
  async writeOutcome(outcome: Outcome): Promise<boolean> {
    const r = await this.redisCmd.bosFleetWriteOutcome(this.k.outcomes(outcome.runId), this.k.counts(outcome.runId), outcome.minerId, JSON.stringify(outcome), outcome.code);
    return r === 1;
  }

  async getOutcome(runId: string, minerId: string): Promise<Outcome | undefined> {
    const raw = await this.redis.hget(this.k.outcomes(runId), minerId);
    return raw ? (JSON.parse(raw) as Outcome) : undefined;
  }

  async getOutcomes(runId: string): Promise<Outcome[]> {
    const all = await this.redis.hvals(this.k.outcomes(runId));
    return all.map((raw) => JSON.parse(raw) as Outcome);
  }

  /** Counts by code plus `_done`, maintained as outcomes are written. */
  async getCounts(runId: string): Promise<{ done: number; counts: Record<string, number> }> {
    const raw = await this.redis.hgetall(this.k.counts(runId));
    const counts: Record<string, number> = {};
    let done = 0;
    for (const [code, n] of Object.entries(raw)) {
      if (code === '_done') done = Number(n);
      else counts[code] = Number(n);
    }
    return { done, counts };
  }
}

// Rollouts in Redis: the immutable record (spec, waves, gates), its miners (targets and per-miner
// specs, apart: a 100,000-miner rollback's are ~18 MB, while the record is read on every gate check),
// and the mutable state, changed only through guarded transitions (so several workers never move a
// rollout twice).
import type { Redis } from 'ioredis';
import type { JobTarget, MutationOperation } from '../fleet/job.js';
import { DEFAULT_PREFIX } from '../fleet/keys.js';
import type { StopGuard } from '../fleet/journal.js';
import { auditKey } from './audit.js';
import { callToken } from '../fleet/ids-and-durations.js';
import type { MutationSpec } from '../workers/ops/mutation-spec.js';

export type RolloutState = 'scheduled' | 'running' | 'paused' | 'halted' | 'completed' | 'aborted' | 'failed';
export const TERMINAL: readonly RolloutState[] = ['halted', 'completed', 'aborted', 'failed'];

/** States of a rollout that may still change miners: unfinished, or failed (`resume` takes it up again). */
export const MAY_CHANGE: readonly RolloutState[] = ['scheduled', 'running', 'paused', 'failed'];

export interface RolloutRecord {
  rolloutId: string;
  operation: MutationOperation;
  spec: MutationSpec;
  /** Per-miner specs (a rollback restores each miner's own `before`). */
  specByMiner?: Record<string, MutationSpec>;
  targets: JobTarget[];
  inventoryDigest: string;
  /** End index (exclusive) of each wave in `targets`. */
  waveEnds: number[];
  waves: number[];
  maxFailureRate: number;
  minSample: number;
  pauseBetweenMs: number;
  maxInFlightPerSite?: number;
  startAtMs: number;
  createdAt: string;
  actor: string;
  rollbackOf?: string;
  /** A rollback of part of what `rollbackOf` changed: the selection that picked it. */
  rollbackOnly?: string;
  timeoutMs?: number;
  /** Sites (`*` = all) whose miners are changed over TLS only, by whichever worker has their TLS file. */
  tlsSites?: string[];
}

/** What is read on every gate check and status: the record without its miners. */
export type RolloutHeader = Omit<RolloutRecord, 'targets' | 'specByMiner'>;

/** A rollout's miners, in wave order, and their per-miner specs (a rollback's). */
export type RolloutMembers = Pick<RolloutRecord, 'targets' | 'specByMiner'>;

export interface RolloutStatus {
  state: RolloutState;
  /** Index of the wave running or last finished (-1 before the first). */
  wave: number;
  reason?: string;
  updatedAt: string;
  /** When wave `wave` had an outcome for every miner and passed its gate (the next waits --pause-between from then). */
  waveEndedAtMs?: number;
  /** A wave whose start came while the rollout was paused: `resume` starts it. */
  heldWave?: number;
}

// Moves the state (KEYS[1]) to ARGV[1] if it is one of ARGV[7..]: stamps updatedAt (ARGV[2]), sets
// the reason to ARGV[4] (ARGV[3] 'set'), clears it ('clear') or leaves it ('keep'), and appends the
// audit entry ARGV[5] to KEYS[2] ('' for none), all in one step: a worker dying in between never
// leaves a state change without its reason or its audit entry. Returns 1 when moved — also when this
// very move (its token ARGV[6], kept as 'lastMove') was made already: ioredis sends a command again
// on a new connection when the old one dropped before the reply, and the move it made then is this
// call's, not "already aborted: cannot abort it".
const TRANSITION = `
local cur = redis.call('HGET', KEYS[1], 'state')
if cur == ARGV[1] and redis.call('HGET', KEYS[1], 'lastMove') == ARGV[6] then return 1 end
for i = 7, #ARGV do
  if ARGV[i] == cur then
    redis.call('HSET', KEYS[1], 'state', ARGV[1], 'updatedAt', ARGV[2], 'lastMove', ARGV[6])
    if ARGV[3] == 'set' then redis.call('HSET', KEYS[1], 'reason', ARGV[4]) end
    if ARGV[3] == 'clear' then redis.call('HDEL', KEYS[1], 'reason') end
    if ARGV[5] ~= '' then redis.call('XADD', KEYS[2], '*', 'entry', ARGV[5]) end
    return 1
  end
end
return 0`;

// Records when wave ARGV[1] ended (ARGV[2]) and appends its audit entry ARGV[3] to KEYS[2], the first
// time only; returns the time it ended.
const WAVE_ENDED = `
if redis.call('HGET', KEYS[1], 'endedWave') ~= ARGV[1] then
  redis.call('HSET', KEYS[1], 'endedWave', ARGV[1], 'waveEndedAt', ARGV[2])
  redis.call('XADD', KEYS[2], '*', 'entry', ARGV[3])
end
return redis.call('HGET', KEYS[1], 'waveEndedAt')`;

// Holds wave ARGV[1] for `resume` only while the state is still paused (a resume in between finds
// it running: the caller starts the wave itself); returns 1 when held.
const HOLD_WAVE = `
if redis.call('HGET', KEYS[1], 'state') ~= 'paused' then return 0 end
redis.call('HSET', KEYS[1], 'heldWave', ARGV[1])
return 1`;

// Creates the rollout's record KEYS[1] (ARGV[1]) unless it exists; when it does create it, in the same
// step: its state KEYS[2] (ARGV[2], stamped ARGV[3]), its place in the list KEYS[3] (scored ARGV[4])
// as ARGV[6], and its start's audit entry ARGV[5] in KEYS[4] ('' for none). Returns 1 when created.
const CREATE = `
if redis.call('SETNX', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'state', ARGV[2], 'wave', '-1', 'updatedAt', ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[6])
if ARGV[5] ~= '' then redis.call('XADD', KEYS[4], '*', 'entry', ARGV[5]) end
return 1`;

// Takes (reads and clears) the held wave, for the take of token ARGV[1]: the same take sent again
// (a reply lost with its connection) gets the wave it took, not none.
const TAKE_HELD = `
if redis.call('HGET', KEYS[1], 'heldTakenBy') == ARGV[1] then return redis.call('HGET', KEYS[1], 'heldTaken') end
local w = redis.call('HGET', KEYS[1], 'heldWave')
if w then
  redis.call('HDEL', KEYS[1], 'heldWave')
  redis.call('HSET', KEYS[1], 'heldTakenBy', ARGV[1], 'heldTaken', w)
end
return w`;

export class RolloutStore {
  constructor(
    readonly redis: Redis,
    readonly prefix = DEFAULT_PREFIX,
  ) {}

  private recordKey(id: string) {
    return `${this.prefix}:rollout:${id}`;
  }
  private membersKey(id: string) {
    return `${this.prefix}:rollout:${id}:members`;
  }
  private stateKey(id: string) {
    return `${this.prefix}:rollout:${id}:state`;
  }
  /** What a miner job checks as it journals its change: the rollout stopped (aborted, halted) by then, the change is not written. */
  stopGuard(id: string): StopGuard {
    return { stateKey: this.stateKey(id), states: ['aborted', 'halted'] };
  }
  private listKey() {
    return `${this.prefix}:rollouts`;
  }
  siteKey(id: string, site: string) {
    return `${this.prefix}:rollout:${id}:site:${site}`;
  }
  /** The slot keys of the rollout's sites that have parked jobs (see site-limit.ts). */
  parkedSitesKey(id: string) {
    return `${this.prefix}:rollout:${id}:parked-sites`;
  }

  /**
   * Records a new rollout in state `initial`, with its start's audit entry (JSON, see auditEntryJson):
   * the record, state, list entry and audit entry in one step, so a start cut short never leaves a
   * rollout without its state or its start entry. False when the id exists already (nothing written
   * but its members, which are the same for the same id).
   */
  async create(record: RolloutRecord, initial: RolloutState, audit = ''): Promise<boolean> {
    const { targets, specByMiner, ...header } = record;
    // Members first: a record is never there without them. The same id always has the same members
    // (a scheduled tick delivered twice), so writing them again is harmless.
    await this.redis.set(this.membersKey(record.rolloutId), JSON.stringify({ targets, ...(specByMiner ? { specByMiner } : {}) } satisfies RolloutMembers));
    const keys = [this.recordKey(record.rolloutId), this.stateKey(record.rolloutId), this.listKey(), auditKey(this.prefix)];
    return (await this.redis.eval(CREATE, keys.length, ...keys, JSON.stringify(header), initial, new Date().toISOString(), String(Date.now()), audit, record.rolloutId)) === 1;
  }

  async get(id: string): Promise<RolloutHeader | undefined> {
    const raw = await this.redis.get(this.recordKey(id));
    if (!raw) return undefined;
    // A record written before the split carries its members inline.
    const { targets: _t, specByMiner: _s, ...header } = JSON.parse(raw) as RolloutRecord;
    return header;
  }

  /** The rollout's miners (read when a wave starts, not on every gate check). */
  async members(id: string): Promise<RolloutMembers | undefined> {
    const raw = (await this.redis.get(this.membersKey(id))) ?? (await this.redis.get(this.recordKey(id)));
    if (!raw) return undefined;
    const { targets, specByMiner } = JSON.parse(raw) as RolloutMembers;
    return targets ? { targets, ...(specByMiner ? { specByMiner } : {}) } : undefined;
  }

  async status(id: string): Promise<RolloutStatus | undefined> {
    const h = await this.redis.hgetall(this.stateKey(id));
    if (!h['state']) return undefined;
    const wave = Number(h['wave'] ?? -1);
    return {
      state: h['state'] as RolloutState,
      wave,
      ...(h['reason'] ? { reason: h['reason'] } : {}),
      updatedAt: h['updatedAt'] ?? '',
      ...(h['waveEndedAt'] && Number(h['endedWave']) === wave ? { waveEndedAtMs: Number(h['waveEndedAt']) } : {}),
      ...(h['heldWave'] ? { heldWave: Number(h['heldWave']) } : {}),
    };
  }

  /**
   * Records when `wave` ended and appends `auditEntry` (JSON) to the audit log, in one step and only
   * the first time the wave is seen ended — however many gate jobs see it, at the same millisecond
   * too. Returns the time it ended.
   */
  async markWaveEnded(id: string, wave: number, auditEntry: string, nowMs = Date.now()): Promise<number> {
    return Number(await this.redis.eval(WAVE_ENDED, 2, this.stateKey(id), auditKey(this.prefix), String(wave), String(nowMs), auditEntry));
  }

  /** Holds `wave` for `resume` if the rollout is still paused; false when it is not (start the wave now). */
  async holdWave(id: string, wave: number): Promise<boolean> {
    return (await this.redis.eval(HOLD_WAVE, 1, this.stateKey(id), String(wave))) === 1;
  }

  /** The wave held while paused, cleared; undefined when none is. */
  async takeHeldWave(id: string): Promise<number | undefined> {
    const w = (await this.redis.eval(TAKE_HELD, 1, this.stateKey(id), callToken())) as string | null;
    return w === null ? undefined : Number(w);
  }

  /**
   * Moves to `to` only from one of `from`; false when another actor got there first. In the same
   * step it sets the rollout's `reason` (or, `clearReason`, forgets the earlier one) and appends
   * `audit` (an entry's JSON, see auditEntryJson) to the audit log.
   */
  async transition(id: string, from: readonly RolloutState[], to: RolloutState, opts: { reason?: string; clearReason?: boolean; audit?: string } = {}): Promise<boolean> {
    const reasonMode = opts.reason !== undefined ? 'set' : opts.clearReason ? 'clear' : 'keep';
    return (await this.redis.eval(TRANSITION, 2, this.stateKey(id), auditKey(this.prefix), to, new Date().toISOString(), reasonMode, opts.reason ?? '', opts.audit ?? '', callToken(), ...from)) === 1;
  }

  async setWave(id: string, wave: number): Promise<void> {
    await this.redis.hset(this.stateKey(id), 'wave', String(wave), 'updatedAt', new Date().toISOString());
  }

  async list(limit = 50): Promise<string[]> {
    return this.redis.zrevrange(this.listKey(), 0, limit - 1);
  }

  /** Every rollout's id, newest first. */
  async listAll(): Promise<string[]> {
    return this.redis.zrevrange(this.listKey(), 0, -1);
  }

  /** The rollouts in one of `states`, newest first: all of them, however old. */
  async inStates(states: readonly RolloutState[]): Promise<string[]> {
    const ids = await this.listAll();
    const read = this.redis.pipeline();
    for (const id of ids) read.hget(this.stateKey(id), 'state');
    const replies = (await read.exec()) ?? [];
    return ids.filter((_, i) => states.includes(replies[i]?.[1] as RolloutState));
  }

  /** Forgets a rollout: its record, miners and state (its runs are the RunStore's; its site keys expire). */
  async delete(id: string): Promise<void> {
    await this.redis.multi().unlink(this.recordKey(id), this.membersKey(id), this.stateKey(id)).zrem(this.listKey(), id).exec();
  }
}

/** The error for a rollout id Redis does not know, with where it may have gone. */
export function noRollout(rolloutId: string): Error {
  // A wave's run id (ID-w1, as `runs` lists it) given for its rollout's.
  const wave = /^(.+)-w(\d+)$/.exec(rolloutId);
  if (wave) return new Error(`no rollout "${rolloutId}": that is the run of wave ${wave[2]} of rollout ${wave[1]} (bos-fleet rollout status ${wave[1]})`);
  return new Error(`no rollout "${rolloutId}" (see bos-fleet rollout status; a schedule's finished rollouts beyond its --keep-runs / --keep-for are deleted: bos-fleet audit --subject ${rolloutId} shows what it did)`);
}

export function waveRunId(rolloutId: string, wave: number): string {
  return `${rolloutId}-w${wave}`;
}

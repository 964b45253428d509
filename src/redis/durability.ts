// Checks that Redis will not lose jobs silently: AOF on and no eviction.
import type { Redis } from 'ioredis';

export interface DurabilityReport {
  appendonly: string | undefined;
  maxmemoryPolicy: string | undefined;
  /** Empty when Redis is durable enough; otherwise one line per problem. */
  problems: string[];
  /** What a power failure of Redis's host would cost, when its AOF is not synced before each reply (undefined otherwise, or unknown). */
  powerLossNote?: string;
}

/** What an AOF synced once a second (or left to the OS) costs when Redis's host loses power. */
export function powerLossNote(appendfsync: string | undefined): string | undefined {
  if (appendfsync === undefined || appendfsync === 'always') return undefined;
  return (
    `Redis has appendfsync ${appendfsync}: a power failure of its host can lose its last second or so of writes — jobs (queued again by the runs' checks) and ` +
    `the record of a change made just then (its outcome then says unchanged, and a rollback leaves that miner at the new value). appendfsync always avoids that ` +
    `(CONFIG SET appendfsync always, and in redis.conf; bos-fleet's own Redis and docker-compose.yml use it)`
  );
}

export async function checkDurability(redis: Redis, info?: ReadonlyMap<string, string>): Promise<DurabilityReport> {
  const get = async (name: string): Promise<string | undefined> => {
    try {
      const r = (await redis.config('GET', name)) as string[];
      return r[1];
    } catch {
      return undefined; // CONFIG disabled (managed Redis): read from INFO below, else reported as unverifiable
    }
  };
  // Managed Redis services often disable CONFIG but answer INFO, which shows both settings too.
  const aof = info?.get('aof_enabled');
  const appendonly = (await get('appendonly')) ?? (aof === undefined ? undefined : aof === '1' ? 'yes' : 'no');
  const maxmemoryPolicy = (await get('maxmemory-policy')) ?? info?.get('maxmemory_policy');
  const problems: string[] = [];
  if (appendonly === undefined || maxmemoryPolicy === undefined) {
    problems.push('could not read Redis settings (CONFIG GET and INFO refused): make sure it runs with appendonly yes and maxmemory-policy noeviction');
  } else {
    if (appendonly !== 'yes') problems.push('Redis has appendonly no: a Redis restart loses every queued job and outcome (set appendonly yes)');
    if (maxmemoryPolicy !== 'noeviction') problems.push(`Redis has maxmemory-policy ${maxmemoryPolicy}: it may evict jobs under memory pressure (set noeviction)`);
  }
  const note = appendonly === 'yes' ? powerLossNote(await get('appendfsync')) : undefined;
  return { appendonly, maxmemoryPolicy, problems, ...(note ? { powerLossNote: note } : {}) };
}

/**
 * Redis memory one miner of a run takes: its BullMQ job (~1.8 KB, kept after it finishes) and its
 * outcome (~1.5 KB with a poll's snapshot), measured with MEMORY USAGE on a 2,000-miner poll.
 */
export const REDIS_BYTES_PER_MINER = 3_600;

export interface RedisMemory {
  usedBytes: number;
  /** 0: no limit. */
  maxBytes: number;
}

/** INFO's fields (one section, or the default ones: memory, persistence, …); undefined when INFO is refused (some managed Redis). */
export async function redisInfo(redis: Redis, section?: string): Promise<Map<string, string> | undefined> {
  let text: string;
  try {
    text = section ? await redis.info(section) : await redis.info();
  } catch {
    return undefined;
  }
  return infoFields(text);
}

/** INFO's text as its fields. */
export function infoFields(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of text.split('\r\n')) {
    const at = line.indexOf(':');
    if (at > 0 && !line.startsWith('#')) fields.set(line.slice(0, at), line.slice(at + 1).trim());
  }
  return fields;
}

/** used_memory and maxmemory from INFO's fields. */
export function memoryOf(info: Map<string, string> | undefined): RedisMemory | undefined {
  const usedBytes = Number(info?.get('used_memory') ?? NaN);
  const maxBytes = Number(info?.get('maxmemory') ?? NaN);
  return Number.isFinite(usedBytes) && Number.isFinite(maxBytes) ? { usedBytes, maxBytes } : undefined;
}

/** used_memory and maxmemory, from INFO memory. */
export async function redisMemory(redis: Redis): Promise<RedisMemory | undefined> {
  return memoryOf(await redisInfo(redis, 'memory'));
}

const KEEP_FEWER = 'or keep fewer finished poll runs (--keep-runs / --keep-for)';

const mb = (bytes: number) => `${(bytes / 1_048_576).toFixed(bytes < 10 * 1_048_576 ? 1 : 0)} MB`;

/**
 * Why a run of `miners` would not fit under Redis's maxmemory (with noeviction, Redis refuses writes
 * once full: a run would stop half enqueued, or its outcomes could not be written), or undefined.
 */
export function headroomProblem(mem: RedisMemory | undefined, miners: number): string | undefined {
  if (!mem || mem.maxBytes === 0) return undefined;
  const need = miners * REDIS_BYTES_PER_MINER;
  const free = Math.max(0, mem.maxBytes - mem.usedBytes);
  if (free >= need) return undefined;
  return (
    `Redis has ${mb(free)} free under its maxmemory of ${mb(mem.maxBytes)} (${mb(mem.usedBytes)} used), and a run of ` +
    `${miners.toLocaleString('en-US')} miners needs about ${mb(need)} (~${(REDIS_BYTES_PER_MINER / 1024).toFixed(1)} KB per miner: its job and its outcome). ` +
    `Raise maxmemory (CONFIG SET maxmemory, and in redis.conf), ${KEEP_FEWER}`
  );
}

/** Above this share of maxmemory, every command warns (with noeviction, a full Redis refuses writes). */
export const MEMORY_WARN_SHARE = 0.8;

/** A warning line when Redis is close to its maxmemory, or undefined. */
export function memoryWarning(mem: RedisMemory | undefined): string | undefined {
  if (!mem || mem.maxBytes === 0 || mem.usedBytes < mem.maxBytes * MEMORY_WARN_SHARE) return undefined;
  const free = Math.max(0, mem.maxBytes - mem.usedBytes);
  return (
    `Redis is ${Math.round((mem.usedBytes / mem.maxBytes) * 100)}% full (${mb(mem.usedBytes)} of its maxmemory ${mb(mem.maxBytes)}): ` +
    `${mb(free)} is room for about ${Math.floor(free / REDIS_BYTES_PER_MINER).toLocaleString('en-US')} more miners' jobs and outcomes, ` +
    `and a run that does not fit is refused. Raise maxmemory, ${KEEP_FEWER}`
  );
}

/**
 * Why Redis refuses writes right now for want of persisting them (MISCONF: its disk is full or not
 * writable), from INFO's persistence fields; undefined when it saves fine or INFO was refused.
 */
export function persistenceProblem(info: Map<string, string> | undefined): string | undefined {
  if (info?.get('aof_enabled') === '1' && info.get('aof_last_write_status') === 'err') {
    return 'Redis cannot write its AOF (aof_last_write_status:err), so it refuses every write: its disk is full or not writable (its log says which); free disk space';
  }
  if (info?.get('rdb_last_bgsave_status') === 'err') {
    return 'Redis\'s last RDB save failed (rdb_last_bgsave_status:err); with stop-writes-on-bgsave-error yes it refuses every write until a save succeeds: check its disk and its log';
  }
  return undefined;
}

/** What Redis's state says an operator should fix now (nearly full, cannot save), from one INFO (read now unless given). */
export async function redisHealthProblems(redis: Redis, given?: Map<string, string>): Promise<string[]> {
  const info = given ?? (await redisInfo(redis));
  return [memoryWarning(memoryOf(info)), persistenceProblem(info)].filter((p): p is string => p !== undefined);
}

export type RedisRefusal = 'OOM' | 'MISCONF' | 'READONLY' | 'NOPERM';

/**
 * Why Redis refused a command, from its error: OOM (at its maxmemory), MISCONF (it cannot save),
 * READONLY (a replica), or NOPERM (the ACL user may not run it or touch its keys); as its bare reply,
 * or inside a script's error (`…: -OOM command not allowed…`, as Redis before 7 reports a script's
 * refused write). Undefined for any other error.
 */
export function redisRefusal(message: string): RedisRefusal | undefined {
  return /(?:^|: -)(OOM|MISCONF|READONLY|NOPERM)\b/.exec(message)?.[1] as RedisRefusal | undefined;
}

/** What to do about a command Redis refused (see redisRefusal), from its error (a sentence; the caller says what to do next). */
export function redisRefusalAdvice(message: string): string {
  switch (redisRefusal(message)) {
    case 'OOM':
      return 'Free or add Redis memory (maxmemory).';
    case 'MISCONF':
      return 'Redis cannot save its data (its disk is full or not writable: its log says which) and refuses writes until it can: free disk space.';
    case 'READONLY':
      return 'This Redis is a read-only replica: point --redis / REDIS_URL at the primary.';
    case 'NOPERM':
      return "The Redis user (ACL) may not do this: let it run every command on bos-fleet's keys (ACL SETUSER USER ~{bosfleet}:* +@all, with the --prefix used), or use another user.";
    default:
      return 'Fix what Redis reports.';
  }
}

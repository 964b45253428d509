// Checks that Redis will not lose jobs silently: AOF on and no eviction.
import type { Redis } from 'ioredis';

export interface DurabilityReport {
  appendonly: string | undefined;
  maxmemoryPolicy: string | undefined;
  /** Empty when Redis is durable enough; otherwise one line per problem. */
  problems: string[];
}

export async function checkDurability(redis: Redis): Promise<DurabilityReport> {
  const get = async (name: string): Promise<string | undefined> => {
    try {
      const r = (await redis.config('GET', name)) as string[];
      return r[1];
    } catch {
      return undefined; // CONFIG disabled (managed Redis): reported as unverifiable below
    }
  };
  const appendonly = await get('appendonly');
  const maxmemoryPolicy = await get('maxmemory-policy');
  const problems: string[] = [];
  if (appendonly === undefined || maxmemoryPolicy === undefined) {
    problems.push('could not read Redis settings (CONFIG GET refused): make sure it runs with appendonly yes and maxmemory-policy noeviction');
  } else {
    if (appendonly !== 'yes') problems.push('Redis has appendonly no: a Redis restart loses every queued job and outcome (set appendonly yes)');
    if (maxmemoryPolicy !== 'noeviction') problems.push(`Redis has maxmemory-policy ${maxmemoryPolicy}: it may evict jobs under memory pressure (set noeviction)`);
  }
  return { appendonly, maxmemoryPolicy, problems };
}

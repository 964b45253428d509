// --max-in-flight-per-site: a lease-based semaphore per rollout and site (a dead worker's lease
// expires instead of holding the slot forever).
import type { Redis } from 'ioredis';

const ACQUIRE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0`;

export async function acquireSiteSlot(redis: Redis, key: string, holder: string, limit: number, leaseMs: number): Promise<boolean> {
  const now = Date.now();
  return (await redis.eval(ACQUIRE, 1, key, now, now + leaseMs, holder, limit, leaseMs * 2)) === 1;
}

export async function releaseSiteSlot(redis: Redis, key: string, holder: string): Promise<void> {
  await redis.zrem(key, holder);
}

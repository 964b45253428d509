// Redis's clock: the one clock every worker host shares. Times compared across hosts (a reboot's
// request, made by the worker that starts its wave, against a miner's boot, read by another) are
// taken from it, so that hosts whose clocks disagree still agree on what came first.
import type { Redis } from 'ioredis';

/** Redis's time now, ms. */
export async function redisNowMs(redis: Redis): Promise<number> {
  const [s, us] = await redis.time();
  return Number(s) * 1_000 + Math.floor(Number(us) / 1_000);
}

/**
 * How far Redis's clock is ahead of this host's (negative: behind), ms: Redis's time minus this
 * host's at the middle of the round trip (off by at most half of it).
 */
export async function redisClockOffsetMs(redis: Redis): Promise<number> {
  const before = Date.now();
  const redisMs = await redisNowMs(redis);
  return Math.round(redisMs - (before + Date.now()) / 2);
}

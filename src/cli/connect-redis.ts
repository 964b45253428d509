// A command's Redis connection: the URL resolved (or the embedded redis-server started), why it could
// not connect and what to check, a stall said while it waits, and the durability check at start-up.
import { Redis } from 'ioredis';
import { checkDurability, redisHealthProblems } from '../redis/durability.js';
import { stateDir, superviseEmbedded } from '../redis/embedded.js';
import { resolveRedisUrl, shownRedisUrl } from '../redis/resolve.js';
import { stallAfterMs, watchStalls } from '../redis/stall.js';
import { checkRedisServer, redisUser } from '../redis/permissions.js';
import { MAXCLIENTS_ADVICE, maxClientsRefusal } from '../redis/maxclients.js';
import { followFailover } from '../redis/failover.js';

/** What to do about a Redis that refused a connection: `where` is the flag or variable that named it (none: the embedded one). */
function unreachableHint(reason: string, where: '--redis' | 'REDIS_URL' | undefined, url: string): string {
  const given = where ?? 'REDIS_URL';
  if (/^NOAUTH/.test(reason)) return `this Redis wants a password: give it in ${given}, redis://:PASSWORD@host:port (or redis://USER:PASSWORD@…)`;
  if (/^WRONGPASS/.test(reason)) return `the user or password in ${given} is refused`;
  if (!where) return `the embedded redis-server (data in ${stateDir()}) did not answer`;
  // A rediss:// URL to a Redis without TLS times out in the handshake: the likelier fix is said.
  return url.startsWith('rediss://') ? `check ${where}, and that redis-server runs there with TLS: rediss:// connects over TLS, a Redis without it needs redis://` : `check ${where}, and that redis-server runs there`;
}

/** The command's Redis did not take its connection: said with why and what to check, and nothing more. */
export class RedisUnreachableError extends Error {}

export async function connectRedis(flag: string | undefined, opts: { refuseVolatile?: boolean; allowVolatile?: boolean } = {}): Promise<{ url: string; redis: Redis }> {
  const url = await resolveRedisUrl(flag);
  const redis = new Redis(url, { maxRetriesPerRequest: null, lazyConnect: true, ...followFailover() });
  // connect() rejects with a bare "Connection is closed."; the reason (ECONNREFUSED, …) is the error event's.
  let cause: Error | undefined;
  redis.on('error', (err: Error) => (cause ??= err));
  // A Redis that accepts the connection but never answers (its process stopped, a long load or
  // script) would leave the command waiting without a word: said once, and the wait goes on.
  const afterMs = stallAfterMs();
  const silent = setTimeout(() => {
    process.stderr.write(
      `bos-fleet: WARNING: Redis at ${shownRedisUrl(url)} has not answered for ${Math.round(afterMs / 1000)} s after connecting: it is frozen, busy (loading its data, a long script or save), or cut off from this host; still waiting (Ctrl-C to stop)\n`,
    );
  }, afterMs);
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    const reason = (cause ?? (err as Error)).message;
    // Accepted and closed at once: a Redis at its maxclients says why on accept, to a connection that listens.
    const full = /Connection is closed|EPIPE|ECONNRESET/.test(reason) ? await maxClientsRefusal(url) : undefined;
    if (full) throw new RedisUnreachableError(`cannot connect to Redis at ${shownRedisUrl(url)}: it refuses new clients (${full}): ${MAXCLIENTS_ADVICE}`);
    const hint = unreachableHint(reason, flag ? '--redis' : process.env['REDIS_URL'] ? 'REDIS_URL' : undefined, url);
    throw new RedisUnreachableError(`cannot connect to Redis at ${shownRedisUrl(url)}: ${reason} (${hint})`);
  } finally {
    clearTimeout(silent);
  }
  let server;
  try {
    server = await checkRedisServer(redis, redisUser(url));
  } catch (err) {
    redis.disconnect();
    throw err;
  }
  for (const warning of server.warnings) process.stderr.write(`bos-fleet: WARNING: ${warning}\n`);
  const stall = watchStalls(redis, 'bos-fleet', 'still waiting for it (Ctrl-C to stop)', { afterMs });
  redis.once('end', () => stall.stop());
  // bos-fleet's own Redis is started again if it goes away while this command runs; one started by
  // an older bos-fleet (its AOF synced once a second) syncs it before each reply from now on.
  if (!(flag ?? process.env['REDIS_URL'])) {
    superviseEmbedded(url);
    await redis.config('SET', 'appendfsync', 'always').catch(() => undefined);
  }
  for (const problem of await redisHealthProblems(redis, server.info)) process.stderr.write(`bos-fleet: WARNING: ${problem}\n`);
  const report = await checkDurability(redis, server.info);
  if (report.problems.length) {
    const banner = report.problems.map((p) => `bos-fleet: WARNING: ${p}`).join('\n');
    process.stderr.write(`${banner}\n`);
    if (opts.refuseVolatile && !opts.allowVolatile) {
      redis.disconnect();
      throw new Error('refusing to run a worker on a Redis that can lose jobs; fix it or pass --allow-volatile-redis');
    }
  }
  // Said by the workers, which record the changes.
  if (opts.refuseVolatile && report.powerLossNote) process.stderr.write(`bos-fleet: note: ${report.powerLossNote}\n`);
  return { url, redis };
}

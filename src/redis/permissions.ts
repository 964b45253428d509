// What BullMQ cannot work without: a Redis user (ACL) allowed INFO and Lua scripts, and Redis 5.0 or
// later. Without INFO, or below 5.0, every BullMQ connection fails its start-up check, and a worker's
// consumers then fail every fetch at once, in a loop that never waits: a core at 100% and SIGTERM
// never handled (measured without INFO: two million errors in 10 s). So a command checks first, and
// says which permission to grant, or that Redis is too old.
import type { Redis } from 'ioredis';
import { isConnectionDrop } from './connection-drop.js';
import { infoFields } from './durability.js';

/** The commands every BullMQ connection runs, with how to grant each. */
const NEEDED: ReadonlyArray<{ what: string; grant: string; probe: (redis: Redis) => Promise<unknown> }> = [
  // All of INFO's default sections: the command's start-up checks of memory and persistence read them too.
  { what: 'INFO (BullMQ reads the server version with it on every connection)', grant: '+info', probe: (r) => r.info() },
  // SCRIPT EXISTS, not EVAL: Redis holds a script as a write (CLIENT PAUSE WRITE, a replica), so the
  // check itself could wait before the command's Ctrl-C handling is in place. ACLs grant scripting
  // as one category (+@scripting), EVAL and SCRIPT alike.
  { what: 'Lua scripts (every queue operation is one)', grant: '+@scripting', probe: (r) => r.script('EXISTS', '0000000000000000000000000000000000000000') },
];

const TESTED = '7.0';

/** Whether version `a` is older than `b` (major, minor, patch). */
function older(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < 3; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) < (b[i] ?? 0);
  return false;
}

/**
 * What is wrong with a Redis server of this INFO text for bos-fleet: `fatal` in cluster mode (bos-fleet
 * talks to one Redis: keys on other nodes would answer MOVED) or below BullMQ's minimum version
 * (5.0.0), a `warning` below the one it recommends (6.2.0); nothing for a Redis-compatible server that
 * reports its own version field (BullMQ judges those itself).
 */
export function serverProblem(info: string): { fatal?: string; warning?: string } {
  if (/^redis_mode:cluster\b/m.test(info)) return { fatal: 'this Redis runs in cluster mode, which bos-fleet does not use (it keeps its queue on one Redis): point --redis / REDIS_URL at a standalone Redis (a replica can take over when it fails)' };
  const version = /^redis_version:(\S+)/m.exec(info)?.[1];
  if (!version || /^(valkey|dragonfly)_version:/m.test(info)) return {};
  const parts = version.split('.').map((p) => Number.parseInt(p, 10) || 0);
  if (older(parts, [5, 0, 0])) return { fatal: `Redis ${version} is too old: bos-fleet's queue (BullMQ) needs Redis 5.0.0 or later (tested on ${TESTED}): upgrade it, or point --redis / REDIS_URL at a newer one` };
  if (older(parts, [6, 2, 0])) return { warning: `Redis ${version} is older than 6.2, which BullMQ recommends (bos-fleet is tested on ${TESTED})` };
  return {};
}

/**
 * Throws when the connection's user may not run a command BullMQ needs (naming the user, the command
 * and the grant) or when the server is older than BullMQ can use; returns the warnings to say, and
 * INFO's fields (undefined when INFO failed otherwise).
 */
export async function checkRedisServer(redis: Redis, user: string): Promise<{ warnings: string[]; info?: Map<string, string> }> {
  let info: string | undefined;
  for (const need of NEEDED) {
    let result: unknown;
    try {
      result = await need.probe(redis);
    } catch (err) {
      const message = (err as Error).message;
      if (/^NOPERM\b/.test(message)) throw new Error(`the Redis user "${user}" may not run ${need.what}: ${message}. Grant it (ACL SETUSER ${user} ${need.grant}) or use a user that has it`);
      if (isConnectionDrop(err)) throw err; // Redis gone: said as for any command
      continue; // another refusal: the command's own work says it
    }
    if (typeof result === 'string') info = result;
  }
  const { fatal, warning } = info ? serverProblem(info) : {};
  if (fatal) throw new Error(fatal);
  return { warnings: warning ? [warning] : [], ...(info ? { info: infoFields(info) } : {}) };
}

/** The ACL user a Redis URL logs in as ("default" when it names none). */
export function redisUser(url: string): string {
  try {
    return decodeURIComponent(new URL(url).username) || 'default';
  } catch {
    return 'default';
  }
}

// Which Redis a command uses: --redis URL, else REDIS_URL, else an embedded redis-server that
// bos-fleet manages in its state directory (AOF on), kept running so runs persist between commands.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startRedisServer, waitForRedis } from './server.js';

export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['BOS_FLEET_HOME']) return env['BOS_FLEET_HOME'];
  const base = env['XDG_STATE_HOME'] || path.join(os.homedir(), '.local', 'state');
  return path.join(base, 'bos-fleet');
}

interface EmbeddedInfo {
  url: string;
  pid: number;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The embedded Redis recorded in `infoFile`, if it is running and answers. */
async function runningEmbedded(infoFile: string): Promise<string | undefined> {
  if (!existsSync(infoFile)) return undefined;
  const info = JSON.parse(readFileSync(infoFile, 'utf8')) as EmbeddedInfo;
  if (!alive(info.pid)) return undefined;
  try {
    await waitForRedis(info.url, 2_000);
    return info.url;
  } catch {
    return undefined; // a stale pid reused by another process
  }
}

/** How long a start lock is honoured: a start takes well under this, so an older lock is left over from a crash. */
const START_LOCK_STALE_MS = 30_000;

/**
 * Runs `fn` holding `lockFile` (created exclusively), so that commands started together (two cron jobs
 * after a reboot) do not each start a redis-server on the same data directory: the second one would
 * fail on the AOF files, or worse, run beside the first. A lock whose owner died, or older than
 * {@link START_LOCK_STALE_MS}, is taken over.
 */
export async function withStartLock<T>(lockFile: string, fn: () => Promise<T>, waitMs = START_LOCK_STALE_MS + 5_000): Promise<T> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const fd = openSync(lockFile, 'wx');
      writeFileSync(fd, `${process.pid}\n`);
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let owner = 0;
    let ageMs = 0;
    try {
      owner = Number(readFileSync(lockFile, 'utf8').trim());
      ageMs = Date.now() - statSync(lockFile).mtimeMs;
    } catch {
      continue; // released meanwhile: try again
    }
    if ((owner > 0 && !alive(owner)) || ageMs > START_LOCK_STALE_MS) {
      try {
        unlinkSync(lockFile);
      } catch {
        // another waiter took it over first
      }
      continue;
    }
    if (Date.now() > deadline) throw new Error(`bos-fleet (pid ${owner}) has been starting the embedded Redis for ${Math.round(ageMs / 1000)} s (lock ${lockFile}); if no bos-fleet is running, delete that file`);
    await new Promise((r) => setTimeout(r, 50));
  }
  try {
    return await fn();
  } finally {
    try {
      unlinkSync(lockFile);
    } catch {
      // taken over as stale: nothing of ours to remove
    }
  }
}

/** Starts (or finds) the embedded Redis and returns its URL. One start at a time per state directory. */
export async function embeddedRedisUrl(dir = stateDir()): Promise<string> {
  const redisDir = path.join(dir, 'redis');
  const infoFile = path.join(redisDir, 'embedded.json');
  mkdirSync(redisDir, { recursive: true });
  const running = await runningEmbedded(infoFile);
  if (running) return running;
  return withStartLock(path.join(redisDir, 'start.lock'), async () => {
    // Another command may have started it while this one waited for the lock.
    const started = await runningEmbedded(infoFile);
    if (started) return started;
    const server = await startRedisServer({ dir: redisDir, detached: true });
    writeFileSync(infoFile, JSON.stringify({ url: server.url, pid: server.process.pid ?? 0 } satisfies EmbeddedInfo) + '\n');
    process.stderr.write(`bos-fleet: started embedded Redis at ${server.url} (data in ${redisDir})\n`);
    return server.url;
  });
}

/**
 * A Redis URL fit to print: its password (redis://user:secret@host, a Redis with requirepass)
 * shown as ***. Works on URLs too broken to parse, as the messages about them need it most.
 */
export function shownRedisUrl(url: string): string {
  // The user ends at the first ':'; the password runs to the authority's last '@' (an unencoded '@'
  // in it is common).
  return url.replace(/^(rediss?:\/\/[^/:@]*:)[^/]*@/, '$1***@');
}

export async function resolveRedisUrl(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const url = flag ?? env['REDIS_URL'];
  if (url) {
    const source = flag === undefined ? 'REDIS_URL' : '--redis';
    if (!/^rediss?:\/\//.test(url)) throw new Error(`${source} must look like redis://host:6379, got "${shownRedisUrl(url)}"`);
    try {
      new URL(url); // what ioredis parses it with: a bad port or host fails here, named, not as a bare "Invalid URL"
    } catch {
      throw new Error(`${source} is not a valid URL: "${shownRedisUrl(url)}" (host, port 1-65535, optional user:password@ and /db)`);
    }
    return url;
  }
  return embeddedRedisUrl();
}

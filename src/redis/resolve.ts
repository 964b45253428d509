// Which Redis a command uses: --redis URL, else REDIS_URL, else an embedded redis-server that
// bos-fleet manages in its state directory (AOF on), kept running so runs persist between commands.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
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

/** Starts (or finds) the embedded Redis and returns its URL. */
export async function embeddedRedisUrl(dir = stateDir()): Promise<string> {
  const redisDir = path.join(dir, 'redis');
  const infoFile = path.join(redisDir, 'embedded.json');
  mkdirSync(redisDir, { recursive: true });
  if (existsSync(infoFile)) {
    const info = JSON.parse(readFileSync(infoFile, 'utf8')) as EmbeddedInfo;
    if (alive(info.pid)) {
      try {
        await waitForRedis(info.url, 2_000);
        return info.url;
      } catch {
        // a stale pid reused by another process: start a fresh one below
      }
    }
  }
  const server = await startRedisServer({ dir: redisDir, detached: true });
  writeFileSync(infoFile, JSON.stringify({ url: server.url, pid: server.process.pid ?? 0 } satisfies EmbeddedInfo) + '\n');
  process.stderr.write(`bos-fleet: started embedded Redis at ${server.url} (data in ${redisDir})\n`);
  return server.url;
}

export async function resolveRedisUrl(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const url = flag ?? env['REDIS_URL'];
  if (url) {
    if (!/^rediss?:\/\//.test(url)) throw new Error(`--redis / REDIS_URL must look like redis://host:6379, got "${url}"`);
    return url;
  }
  return embeddedRedisUrl();
}

// bos-fleet's own redis-server, used when there is neither --redis nor REDIS_URL: its data in the
// state directory (AOF on), kept running between commands, started once however many commands start
// together, and started again (same address, same data) when it goes away under a running command.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
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

const redisDirOf = (dir: string) => path.join(dir, 'redis');
const infoFileOf = (dir: string) => path.join(redisDirOf(dir), 'embedded.json');

function readInfo(infoFile: string): EmbeddedInfo | undefined {
  if (!existsSync(infoFile)) return undefined;
  try {
    return JSON.parse(readFileSync(infoFile, 'utf8')) as EmbeddedInfo;
  } catch {
    return undefined; // half-written by a command that died: started again below, under the lock
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const portOf = (url: string): number => Number(new URL(url).port);

/** Whether `pid` is the redis-server serving `url`, by its command line (Linux); undefined where the system cannot say. */
function servesUrl(pid: number, url: string): boolean | undefined {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('redis-server') && cmdline.includes(`:${portOf(url)}`);
  } catch {
    return undefined;
  }
}

/**
 * The embedded Redis recorded in `dir`, if it is running; it is waited for while it loads its data
 * (a large AOF takes a while). One that runs but does not answer is an error, not a reason to start
 * a second redis-server on the same data.
 */
async function runningEmbedded(dir: string): Promise<string | undefined> {
  const info = readInfo(infoFileOf(dir));
  if (!info || !alive(info.pid)) return undefined;
  try {
    await waitForRedis(info.url, 2_000, info.pid);
    return info.url;
  } catch (err) {
    if (servesUrl(info.pid, info.url) !== true) return undefined; // its pid now belongs to another program (a reboot since)
    throw new Error(
      `the embedded Redis (pid ${info.pid}, ${info.url}, data in ${redisDirOf(dir)}) is running but does not answer (${(err as Error).message}); ` +
        `see ${path.join(redisDirOf(dir), 'redis.log')}, and if it is stuck, stop it (kill ${info.pid}) and run the command again`,
    );
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

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** The embedded Redis's URL, and whether this call started it. */
async function ensureEmbedded(dir: string): Promise<{ url: string; started: boolean }> {
  mkdirSync(redisDirOf(dir), { recursive: true });
  const running = await runningEmbedded(dir);
  if (running) return { url: running, started: false };
  return withStartLock(path.join(redisDirOf(dir), 'start.lock'), async () => {
    // Another command may have started it while this one waited for the lock.
    const started = await runningEmbedded(dir);
    if (started) return { url: started, started: false };
    // On its last port when that is free: processes still holding connections to it reconnect by themselves.
    const last = readInfo(infoFileOf(dir));
    const lastPort = last ? portOf(last.url) : 0;
    const server = await startRedisServer({ dir: redisDirOf(dir), detached: true, ...(lastPort > 0 && (await portFree(lastPort)) ? { port: lastPort } : {}) });
    writeFileSync(infoFileOf(dir), JSON.stringify({ url: server.url, pid: server.process.pid ?? 0 } satisfies EmbeddedInfo) + '\n');
    return { url: server.url, started: true };
  });
}

/** Starts (or finds) the embedded Redis and returns its URL. One start at a time per state directory. */
export async function embeddedRedisUrl(dir = stateDir()): Promise<string> {
  const { url, started } = await ensureEmbedded(dir);
  if (started) process.stderr.write(`bos-fleet: started embedded Redis at ${url} (data in ${redisDirOf(dir)})\n`);
  return url;
}

/**
 * While a command runs on the embedded Redis, starts it again if it goes away (killed, out of memory,
 * crashed): from its AOF, on the same address, so this command's connections (and any other
 * bos-fleet's) reconnect by themselves and its run goes on. Checks every `everyMs`; never keeps the
 * process alive.
 */
export function superviseEmbedded(url: string, dir = stateDir(), everyMs = 1_000): { stop(): void } {
  let checking = false;
  let lastFailureMs = 0;
  const timer = setInterval(() => {
    const info = readInfo(infoFileOf(dir));
    // No record: its state directory was removed under us, which is no reason to create it again.
    if (checking || !info || alive(info.pid)) return;
    checking = true;
    ensureEmbedded(dir)
      .then(({ url: now, started }) => {
        if (started) {
          process.stderr.write(
            `bos-fleet: the embedded Redis (pid ${info.pid}) had stopped; started it again from its data in ${redisDirOf(dir)}` +
              (now === url ? ` on the same address (${now})\n` : ` at ${now} (port ${portOf(url)} was taken): this command cannot reach it there; stop it and run it again\n`),
          );
        }
      })
      .catch((err: unknown) => {
        if (Date.now() - lastFailureMs < 60_000) return;
        lastFailureMs = Date.now();
        process.stderr.write(`bos-fleet: the embedded Redis has stopped and could not be started again (${err instanceof Error ? err.message : String(err)}); trying again every ${everyMs / 1000} s\n`);
      })
      .finally(() => (checking = false));
  }, everyMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

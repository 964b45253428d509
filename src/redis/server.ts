// Starts and stops a local redis-server: throwaway ones for tests and the demo, a persistent one for the CLI.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Redis } from 'ioredis';

export const REDIS_MISSING_HELP =
  'redis-server was not found on PATH. Install it (Debian/Ubuntu: `sudo apt-get install redis-server`, macOS: `brew install redis`), ' +
  'or point bos-fleet at an existing Redis with --redis redis://HOST:6379 or REDIS_URL.';

export interface LocalRedis {
  url: string;
  port: number;
  dir: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Waits until Redis answers PING (and has loaded its AOF); with `pid`, until that very process answers
 * (not another Redis already on the port). A Redis still loading its data answers LOADING: that is
 * progress, so the wait goes on as long as it does (a large AOF takes minutes); `timeoutMs` is the
 * time allowed without an answer.
 */
export async function waitForRedis(url: string, timeoutMs = 15_000, pid?: number): Promise<void> {
  let deadline = Date.now() + timeoutMs;
  for (;;) {
    // Timeouts of its own: a redis-server that is stopped (SIGSTOP) accepts connections and never answers.
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false, connectTimeout: 2_000, commandTimeout: 2_000 });
    r.on('error', () => undefined);
    try {
      await r.connect();
      if ((await r.ping()) === 'PONG' && (pid === undefined || (await r.info('server')).includes(`process_id:${pid}\r`))) return;
    } catch (err) {
      if (/^LOADING/.test((err as Error).message)) deadline = Date.now() + timeoutMs;
    } finally {
      r.disconnect();
    }
    if (Date.now() > deadline) throw new Error(`redis at ${url} did not answer within ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 50));
  }
}

/** The last warnings of a redis-server's log (lines marked `#`), or where to look. */
function redisLogReason(dir: string): string {
  const logFile = path.join(dir, 'redis.log');
  try {
    const warnings = readFileSync(logFile, 'utf8')
      .split('\n')
      .filter((l) => / # /.test(l))
      .slice(-2)
      .map((l) => l.replace(/^.*? # /, ''));
    if (warnings.length) return `${warnings.join('; ')} (log: ${logFile})`;
  } catch {
    // no log yet
  }
  return `see ${logFile}`;
}

export interface StartRedisOptions {
  dir: string;
  port?: number;
  /** Durable by default: AOF on. */
  appendonly?: boolean;
  /**
   * When the AOF reaches the disk: `always` by default, before Redis replies (a power failure of its
   * host loses nothing it acknowledged: a change's journal record among them); `everysec` once a second.
   */
  appendfsync?: 'always' | 'everysec';
  /** Keep running after this process exits (the CLI's embedded Redis). */
  detached?: boolean;
}

export async function startRedisServer(opts: StartRedisOptions): Promise<LocalRedis> {
  mkdirSync(opts.dir, { recursive: true });
  const port = opts.port ?? (await freePort());
  const args = [
    '--bind', '127.0.0.1',
    '--port', String(port),
    '--dir', opts.dir,
    '--appendonly', opts.appendonly === false ? 'no' : 'yes',
    '--appendfsync', opts.appendfsync ?? 'always',
    '--maxmemory-policy', 'noeviction',
    '--save', '',
    '--protected-mode', 'yes',
    '--logfile', path.join(opts.dir, 'redis.log'),
  ];
  const child = spawn('redis-server', args, { stdio: 'ignore', detached: opts.detached ?? false });
  const spawned = await new Promise<Error | undefined>((resolve) => {
    child.once('spawn', () => resolve(undefined));
    child.once('error', (err) => resolve(err));
  });
  if (spawned) {
    throw new Error((spawned as NodeJS.ErrnoException).code === 'ENOENT' ? REDIS_MISSING_HELP : `redis-server failed to start: ${spawned.message}`);
  }
  if (opts.detached) child.unref();
  const url = `redis://127.0.0.1:${port}`;
  // A redis-server that exits at once (port taken, bad dir, broken AOF) is said at once, with its reason.
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code, signal) => reject(new Error(`redis-server exited (${signal ?? `code ${code}`}) before answering on ${url}: ${redisLogReason(opts.dir)}`))),
  );
  exited.catch(() => undefined);
  try {
    await Promise.race([waitForRedis(url, 15_000, child.pid), exited]);
  } catch (err) {
    child.kill('SIGKILL'); // never leave a server behind that did not come up
    throw err;
  }
  return {
    url,
    port,
    dir: opts.dir,
    process: child,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

// A Redis at its `maxclients` accepts each new connection and closes it at once, after one error line
// ("-ERR max number of clients reached"). ioredis sees only the close (EPIPE, "Connection is closed")
// and reconnects quietly for ever: a command would say "cannot connect" with Redis running, and a
// worker's consumers whose connections never open would take no job without a word. Both are told here.
import net from 'node:net';
import type { Redis } from 'ioredis';
import { redisInfo } from './durability.js';

/** What to do about a Redis that has no room for more clients. */
export const MAXCLIENTS_ADVICE =
  'raise its maxclients (CONFIG SET maxclients N, and in redis.conf; the open-files limit of redis-server must allow it), or close idle clients (each bos-fleet worker holds two Redis connections per consumer, plus a few)';

/**
 * What Redis said to a connection of ours before closing it, read with a bare TCP connection that
 * sends nothing (Redis writes its refusal on accept): "ERR max number of clients reached", or
 * undefined when it said nothing within `waitMs` (it is not that).
 */
export function greetingRefusal(host: string, port: number, waitMs = 1_000): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let text = '';
    const done = (value: string | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    const timer = setTimeout(() => done(undefined), waitMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      text += chunk;
      const line = /^-(.*)\r\n/.exec(text);
      if (line) done(line[1]);
    });
    socket.on('error', () => done(undefined));
    socket.on('close', () => done(/^-(.*)/.exec(text)?.[1]?.trim() || undefined));
  });
}

/** Whether the Redis behind `url` (plain redis://, not TLS) refuses new clients for want of room; its refusal if so. */
export async function maxClientsRefusal(url: string): Promise<string | undefined> {
  if (!url.startsWith('redis://')) return undefined;
  const u = new URL(url);
  const refusal = await greetingRefusal(u.hostname.replace(/^\[|\]$/g, ''), Number(u.port || 6379));
  return refusal && /max number of clients/i.test(refusal) ? refusal : undefined;
}

/** Redis's clients against its maxclients, read on a connection that is up; undefined when there is room. */
export async function clientsFull(redis: Redis): Promise<{ connected: number; max: number } | undefined> {
  const info = await redisInfo(redis, 'clients');
  const connected = Number(info?.get('connected_clients'));
  const max = Number(info?.get('maxclients'));
  return Number.isFinite(connected) && Number.isFinite(max) && connected >= max ? { connected, max } : undefined;
}

/**
 * A worker's connections that fail to open while its first one works: `check()` (called on each
 * such error) reads Redis's clients, at most every `everyMs`, and says so once per `everyMs` while
 * Redis is at its maxclients — their consumers take no job meanwhile.
 */
export function roomWatch(redis: Redis, say: (line: string) => void, everyMs = 10_000): { check(): void; stop(): void } {
  let lastMs = -Infinity;
  let stopped = false;
  return {
    check() {
      const now = Date.now();
      if (stopped || now - lastMs < everyMs || redis.status !== 'ready') return;
      lastMs = now;
      clientsFull(redis).then(
        (full) => {
          if (full && !stopped) say(`Redis refuses new connections: it is at its maxclients (${full.connected} of ${full.max} clients connected), so some of this worker's connections cannot open and their consumers take no job until they do: ${MAXCLIENTS_ADVICE}`);
        },
        () => undefined,
      );
    },
    stop: () => void (stopped = true),
  };
}

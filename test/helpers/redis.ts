// Per-test isolation on the shared test Redis: a unique BullMQ prefix and key namespace per test.
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { inject } from 'vitest';
import { startRedisServer, type LocalRedis } from '../../src/redis/server.js';

export function redisUrl(): string {
  return inject('redisUrl');
}

export function uniquePrefix(name = 'test'): string {
  return `t-${name}-${randomUUID().slice(0, 8)}`;
}

/** SIGKILLs a throwaway Redis and starts it again on the same port and data dir (AOF replay). */
export async function crashAndRestart(server: LocalRedis): Promise<LocalRedis> {
  server.process.kill('SIGKILL');
  await new Promise((resolve) => (server.process.exitCode !== null || server.process.signalCode !== null ? resolve(undefined) : server.process.once('exit', resolve)));
  await new Promise((r) => setTimeout(r, 1_000));
  return startRedisServer({ dir: server.dir, port: server.port });
}

export interface CuttingProxy {
  url: string;
  /**
   * The next data from Redis with several replies (a pipeline's) is passed on up to the end of its
   * first reply only, then the connection is cut: the pipeline in flight has part of its replies
   * (ioredis aborts the rest).
   */
  cutAfterFirstReply(): void;
  /** Connections cut so far. */
  cuts(): number;
  close(): Promise<void>;
}

/** The end of the first bulk-string reply in `buf`, or the whole buffer. */
function firstReplyEnd(buf: Buffer): number {
  const eol = buf.indexOf('\r\n');
  if (eol < 0) return buf.length;
  const len = Number(buf.subarray(1, eol).toString());
  return Math.min(buf.length, len < 0 ? eol + 2 : eol + 2 + len + 2);
}

/** A TCP proxy on loopback: each new connection goes to `upstreamPort()`'s Redis, `wire` passes its bytes. */
async function startProxy(upstreamPort: () => number, wire: (client: net.Socket, upstream: net.Socket) => void): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(upstreamPort(), '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => (sockets.delete(s), client.destroy(), upstream.destroy()));
    }
    wire(client, upstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `redis://127.0.0.1:${port}`,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A TCP proxy to a Redis on loopback that can cut a connection in the middle of a pipeline's replies. */
export async function startCuttingProxy(redisPort: number): Promise<CuttingProxy> {
  let armed = false;
  let cuts = 0;
  const proxy = await startProxy(
    () => redisPort,
    (client, upstream) => {
      client.on('data', (d) => upstream.write(d));
      upstream.on('data', (d) => {
        // Cut where data holds several bulk replies: a pipeline's (a single command would just be sent again).
        if (!armed || d[0] !== 0x24 /* $ */ || firstReplyEnd(d) >= d.length) return void client.write(d);
        armed = false;
        cuts++;
        client.write(d.subarray(0, firstReplyEnd(d)), () => (client.destroy(), upstream.destroy()));
      });
    },
  );
  return { ...proxy, cutAfterFirstReply: () => void (armed = true), cuts: () => cuts };
}

/**
 * A Redis primary's name (a DNS name, a managed service's endpoint): new connections go to the Redis
 * it names now (`moveTo` another port: a failover), those already open stay where they are.
 */
export async function startRedisName(port: number): Promise<{ url: string; moveTo(port: number): void; close(): Promise<void> }> {
  let current = port;
  const proxy = await startProxy(
    () => current,
    (client, upstream) => {
      client.pipe(upstream);
      upstream.pipe(client);
    },
  );
  return { ...proxy, moveTo: (p) => void (current = p) };
}

export interface HoldingProxy {
  url: string;
  /** Resolves once a command holding `text` (a script's) went to Redis: Redis's replies on that connection are held from then on. */
  seen: Promise<void>;
  /** Passes the held replies on, and holds no more. */
  release(): void;
  /** Cuts the held connection instead: its held replies are never delivered (its client reconnects through the proxy). */
  cut(): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy to a Redis on loopback that, once a client sends a command holding `text` (a script's
 * text, say), holds Redis's replies on that connection until released: the command runs in Redis, and
 * its client waits for the answer as long as the test wants (it can be frozen there).
 */
export async function startHoldingProxy(redisPort: number, text: string): Promise<HoldingProxy> {
  let holding: net.Socket | undefined;
  let released = false;
  const held: Buffer[] = [];
  let seen!: () => void;
  const seenPromise = new Promise<void>((r) => (seen = r));
  const proxy = await startProxy(
    () => redisPort,
    (client, upstream) => {
      let tail = '';
      client.on('data', (d: Buffer) => {
        // The text may straddle two reads: the end of the one before is looked at with this one.
        const look = tail + d.toString('latin1');
        tail = look.slice(-text.length);
        if (!holding && !released && look.includes(text)) (holding = client), seen();
        upstream.write(d);
      });
      upstream.on('data', (d: Buffer) => (holding === client && !released ? held.push(d) : client.write(d)));
    },
  );
  return {
    ...proxy,
    seen: seenPromise,
    release: () => {
      released = true;
      for (const d of held.splice(0)) holding?.write(d);
    },
    cut: () => {
      held.length = 0;
      holding?.destroy();
    },
  };
}

// A queue on a connection whose Redis is gone prints nothing itself: the connection's own listener
// says Redis is unreachable, once per interval (BullMQ printed each error's stack, per reconnect).
import { createServer } from 'node:net';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { describe, expect, it, vi } from 'vitest';
import { openQueue } from '../src/fleet/queue.js';

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

describe('queues while Redis is down', () => {
  it.each([
    ['a bare BullMQ queue prints each error', (c: Redis) => new Queue('q', { connection: c, prefix: 'x' }), true],
    ['openQueue prints nothing', (c: Redis) => openQueue('q', c, 'x'), false],
  ] as const)('%s', async (_name, open, prints) => {
    const printed = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const connection = new Redis(await closedPort(), '127.0.0.1', { maxRetriesPerRequest: null, retryStrategy: () => 20 });
    let errors = 0;
    connection.on('error', () => errors++);
    const q = open(connection);
    try {
      await vi.waitFor(() => expect(errors).toBeGreaterThanOrEqual(3), { timeout: 5_000 });
      expect(printed.mock.calls.length > 0).toBe(prints);
    } finally {
      printed.mockRestore();
      connection.disconnect();
      await q.close().catch(() => undefined);
    }
  });
});

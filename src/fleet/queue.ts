// Opening a BullMQ queue on one of our Redis connections.
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';

/**
 * A queue on `connection`. BullMQ re-emits every error of the connection on each queue and, with no
 * listener there, prints the error's stack — once per reconnect attempt while Redis is down. The
 * connection's own listener says Redis is unreachable (workers/error-log.ts), so the queue's copy is
 * dropped.
 */
export function openQueue(name: string, connection: Redis, prefix: string): Queue {
  const q = new Queue(name, { connection, prefix });
  q.on('error', () => undefined);
  return q;
}

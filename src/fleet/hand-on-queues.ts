// Where a miner job can be: the run's queue (QUEUE_NAME), or a hand-on queue. A worker that fetches a
// job it cannot do (no password for the miner's profile, no TLS material for its site) hands it on to
// the queue of workers that can: one queue per worker configuration, named after what the workers
// have (see workers/hand-on.ts). Cancelling a run, releasing a paused rollout and waking parked jobs
// look in every one of them.
import { createHash } from 'node:crypto';
import type { Queue } from 'bullmq';
import { openQueue } from './queue.js';
import type { Redis } from 'ioredis';
import { keys, QUEUE_NAME } from './keys.js';

/** A worker configuration's name: the same profiles and TLS sites give the same name on any host. */
export function signatureOf(caps: { profiles: readonly string[]; tlsSites: readonly string[] }): string {
  const canonical = JSON.stringify([[...caps.profiles].sort(), [...caps.tlsSites].sort()]);
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

export const handOnQueueName = (signature: string): string => `${QUEUE_NAME}-for-${signature}`;

const opened = new WeakMap<Queue, Map<string, Queue>>();

function prefixOf(queue: Queue): string {
  return queue.opts.prefix ?? 'bull';
}

/** The ioredis client the run's queue was made with (bos-fleet always passes one). */
function connectionOf(main: Queue): Redis {
  const c = main.opts.connection as Partial<Redis> | undefined;
  if (!c || typeof c.smembers !== 'function') throw new TypeError('hand-on queues: the run queue must be made with an ioredis client as its connection');
  return c as Redis;
}

/** The hand-on queue of `signature`, on the main queue's connection (kept open with it). */
export function handOnQueue(main: Queue, signature: string): Queue {
  let byName = opened.get(main);
  if (!byName) opened.set(main, (byName = new Map()));
  const name = handOnQueueName(signature);
  let q = byName.get(name);
  if (!q) byName.set(name, (q = openQueue(name, connectionOf(main), prefixOf(main))));
  return q;
}

/** Every hand-on queue used on this prefix (listed when a job is first handed to it). */
export async function handOnQueues(main: Queue): Promise<Queue[]> {
  return (await connectionOf(main).smembers(keys(prefixOf(main)).handOnQueues)).map((sig) => handOnQueue(main, sig));
}

/** The run's queue and every hand-on queue. */
export async function allJobQueues(main: Queue): Promise<Queue[]> {
  return [main, ...(await handOnQueues(main))];
}

/**
 * The Redis keys a miner job of this id would have, in the run's queue and each hand-on queue (read
 * without opening those queues): a job is somewhere iff one of them exists. `keys(id)[i]` is its key
 * in `queues[i]` (by name).
 */
export async function jobKeysOf(main: Queue): Promise<{ queues: string[]; keys: (id: string) => string[] }> {
  const queues = [main.name, ...(await connectionOf(main).smembers(keys(prefixOf(main)).handOnQueues)).map(handOnQueueName)];
  return { queues, keys: (id) => queues.map((name) => `${prefixOf(main)}:${name}:${id}`) };
}

/** Closes the hand-on queues opened for `main` (not the shared connection). */
export async function closeHandOnQueues(main: Queue): Promise<void> {
  const byName = opened.get(main);
  opened.delete(main);
  await Promise.all([...(byName?.values() ?? [])].map((q) => q.close().catch(() => undefined)));
}

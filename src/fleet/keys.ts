// Redis key names. Everything lives under one hash-tagged prefix so it also works on Redis Cluster.

export const DEFAULT_PREFIX = '{bosfleet}';
export const QUEUE_NAME = 'jobs';

export function keys(prefix: string = DEFAULT_PREFIX) {
  return {
    /** BullMQ's own prefix for the queue. */
    bullPrefix: prefix,
    runs: `${prefix}:runs`,
    run: (runId: string) => `${prefix}:run:${runId}`,
    outcomes: (runId: string) => `${prefix}:outcomes:${runId}`,
    counts: (runId: string) => `${prefix}:counts:${runId}`,
    /** A change run's `before` per miner, written before the miner is written to (see RunStore.journalBefore). */
    journal: (runId: string) => `${prefix}:journal:${runId}`,
    /** A poll run left to the workers: its miners and how its jobs were enqueued, so lost jobs can go in again (producer/run-keeper.ts). */
    kept: (runId: string) => `${prefix}:kept:${runId}`,
    /** Ids of the workers that announced themselves; each one's record expires unless refreshed. */
    workers: `${prefix}:workers`,
    worker: (id: string) => `${prefix}:worker:${id}`,
    /** Signatures of the worker configurations jobs were handed on to (see fleet/hand-on-queues.ts). */
    handOnQueues: `${prefix}:hand-on-queues`,
  };
}

export type Keys = ReturnType<typeof keys>;

/** BullMQ job ids may not contain ':' nor be all digits; ours are `<runId>.<minerId>`. */
export function jobId(runId: string, minerId: string): string {
  return `${runId}.${minerId}`;
}

// Which worker processes are alive and what they can do (their credentials profiles and TLS sites), so
// that a worker handed a job it cannot do hands it on to those that can instead of failing the miner.
// Names only: a profile's name is in every job already; no password or key is ever written here.
import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { Redis } from 'ioredis';
import type { JobData } from '../fleet/job.js';
import { keys, type Keys } from '../fleet/keys.js';
import { siteHasTls } from '../core/tls.js';
import { signatureOf } from '../fleet/hand-on-queues.js';
import { poolPasswordRefs } from './ops/mutation-spec.js';

export interface WorkerCapabilities {
  /** Credentials profile names this worker has passwords for. */
  profiles: string[];
  /** Sites this worker has TLS material for (`*` = every site). */
  tlsSites: string[];
}

/** What a live worker says about itself. */
export interface WorkerInfo extends WorkerCapabilities {
  id: string;
  host: string;
  pid: number;
  startedAt: string;
  concurrency: number;
  threads: number;
  /** The name of this configuration (profiles and TLS sites): its hand-on queue's. */
  signature?: string;
}

/**
 * Said after work is left to separate workers: when none is running to take it (`waits` says what
 * waits), or when some of its miners need a profile or TLS that no running worker has (those would end
 * INVALID_JOB).
 */
export function workersWarning(workers: WorkerInfo[], targets: readonly JobData['target'][], tlsSites: readonly string[], waits: string, params: JobData['params'] = {}): string | undefined {
  if (workers.length === 0) return `no \`bos-fleet worker\` is running on this Redis and prefix: ${waits} until one starts`;
  const lacking = new Map<string, number>();
  for (const target of targets) {
    const tls = siteHasTls(tlsSites, target.site);
    if (workers.some((w) => missingFor({ target, tls, params }, w) === undefined)) continue;
    const what = missingFor({ target, tls, params }, workers[0]!) ?? '';
    lacking.set(what, (lacking.get(what) ?? 0) + 1);
  }
  if (lacking.size === 0) return undefined;
  const list = [...lacking].map(([what, n]) => `${n} miner${n === 1 ? '' : 's'} need ${what}`).join('; ');
  return `no running worker (${workers.length}) has what some miners need, so they will end INVALID_JOB unless a worker that has it starts: ${list}`;
}

/** The live workers on this Redis and prefix (dead ones are forgotten on the way). */
export async function listWorkers(redis: Redis, prefix: string): Promise<WorkerInfo[]> {
  const k = keys(prefix);
  const ids = await redis.smembers(k.workers);
  const raw = ids.length ? await redis.mget(ids.map((id) => k.worker(id))) : [];
  const dead = ids.filter((_, i) => raw[i] === null);
  if (dead.length) await redis.srem(k.workers, ...dead);
  return raw.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as WorkerInfo);
}

/** A live worker's record expires after this unless refreshed (every third of it). */
export const REGISTRY_TTL_MS = 30_000;

/** What a job needs of a worker: its miner, whether TLS was asked, and its params (a pools change's password profiles). */
export type JobNeeds = Pick<JobData, 'target' | 'tls'> & { params?: JobData['params'] };

/** What this worker lacks to run the job, or undefined when it can run it. */
export function missingFor(data: JobNeeds, caps: WorkerCapabilities): string | undefined {
  if (!caps.profiles.includes(data.target.credentials)) return `credentials profile "${data.target.credentials}"`;
  const poolRef = poolPasswordRefs(data.params?.['mutation']).find((ref) => !caps.profiles.includes(ref));
  if (poolRef !== undefined) return `credentials profile "${poolRef}" (a pool password)`;
  if (data.tls && !siteHasTls(caps.tlsSites, data.target.site)) return `TLS for site "${data.target.site || '-'}"`;
  return undefined;
}

export class WorkerRegistry {
  readonly id = randomUUID();
  /** This worker's configuration's name (see fleet/hand-on-queues.ts). */
  readonly signature: string;
  private timer: NodeJS.Timeout | undefined;
  private others: { atMs: number; caps: WorkerInfo[] } | undefined;
  private reading: Promise<WorkerInfo[]> | undefined;
  private readonly info: WorkerInfo;
  private readonly k: Keys;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    readonly caps: WorkerCapabilities,
    about: { concurrency: number; threads: number } = { concurrency: 0, threads: 0 },
  ) {
    this.k = keys(prefix);
    this.signature = signatureOf(caps);
    this.info = { id: this.id, host: os.hostname(), pid: process.pid, startedAt: new Date().toISOString(), ...about, ...caps, signature: this.signature };
  }

  /** Announces this worker now and every third of the TTL until stop(). */
  async start(): Promise<void> {
    await this.announce();
    this.timer = setInterval(() => void this.announce().catch(() => undefined), REGISTRY_TTL_MS / 3);
    this.timer.unref();
  }

  private async announce(): Promise<void> {
    await this.redis.multi().set(this.k.worker(this.id), JSON.stringify(this.info), 'PX', REGISTRY_TTL_MS).sadd(this.k.workers, this.id).exec();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.redis.multi().del(this.k.worker(this.id)).srem(this.k.workers, this.id).exec().catch(() => undefined);
  }

  /** The other live workers, as read at most `maxAgeMs` ago (or by the read under way). */
  private async otherWorkers(maxAgeMs = 1_000): Promise<WorkerInfo[]> {
    if (this.others && Date.now() - this.others.atMs < maxAgeMs) return this.others.caps;
    this.reading ??= listWorkers(this.redis, this.prefix)
      .then((all) => {
        const caps = all.filter((w) => w.id !== this.id);
        this.others = { atMs: Date.now(), caps };
        return caps;
      })
      .finally(() => (this.reading = undefined));
    return this.reading;
  }

  /**
   * The configuration to hand this job on to: that of a live worker that has what it needs (one of
   * them at random when several configurations do), or undefined when none has. "None" is read again
   * from Redis first (a worker started a moment ago counts), since it ends the job for good.
   */
  async handOnTarget(data: JobNeeds): Promise<string | undefined> {
    const able = async (maxAgeMs?: number) => [...new Set((await this.otherWorkers(maxAgeMs)).filter((w) => w.signature && missingFor(data, w) === undefined).map((w) => w.signature!))];
    let sigs = await able();
    if (sigs.length === 0) sigs = await able(0);
    return sigs[Math.floor(Math.random() * sigs.length)];
  }

  /**
   * Whether a live worker of a version before hand-on queues (it announces no configuration name, so
   * nothing can be handed on to it) has what this job needs: during a rolling upgrade such a job is
   * put back in the run's queue for it, not ended INVALID_JOB.
   */
  async olderCanRun(data: JobNeeds): Promise<boolean> {
    return (await this.otherWorkers()).some((w) => !w.signature && missingFor(data, w) === undefined);
  }

  /** The configurations of the live workers, this one's included. */
  async liveSignatures(): Promise<Set<string>> {
    const sigs = new Set([this.signature]);
    for (const w of await this.otherWorkers(0)) if (w.signature) sigs.add(w.signature);
    return sigs;
  }
}

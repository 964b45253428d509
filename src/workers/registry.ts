// Which worker processes are alive and what they can do (their credentials profiles and TLS sites), so
// that a worker handed a job it cannot do gives it back to one that can instead of failing the miner.
// Names only: a profile's name is in every job already; no password or key is ever written here.
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { JobData } from '../fleet/job.js';

export interface WorkerCapabilities {
  /** Credentials profile names this worker has passwords for. */
  profiles: string[];
  /** Sites this worker has TLS material for (`*` = every site). */
  tlsSites: string[];
}

/** A live worker's record expires after this unless refreshed (every third of it). */
export const REGISTRY_TTL_MS = 30_000;

/** What this worker lacks to run the job, or undefined when it can run it. */
export function missingFor(data: Pick<JobData, 'target' | 'tls'>, caps: WorkerCapabilities): string | undefined {
  if (!caps.profiles.includes(data.target.credentials)) return `credentials profile "${data.target.credentials}"`;
  if (data.tls && !caps.tlsSites.includes(data.target.site) && !caps.tlsSites.includes('*')) {
    return `TLS for site "${data.target.site || '-'}" (the run asked for TLS; this worker would connect in plaintext)`;
  }
  return undefined;
}

export class WorkerRegistry {
  readonly id = randomUUID();
  private timer: NodeJS.Timeout | undefined;
  private others: { atMs: number; caps: WorkerCapabilities[] } | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    readonly caps: WorkerCapabilities,
  ) {}

  private get setKey(): string {
    return `${this.prefix}:workers`;
  }

  private key(id: string): string {
    return `${this.prefix}:worker:${id}`;
  }

  /** Announces this worker now and every third of the TTL until stop(). */
  async start(): Promise<void> {
    await this.announce();
    this.timer = setInterval(() => void this.announce().catch(() => undefined), REGISTRY_TTL_MS / 3);
    this.timer.unref();
  }

  private async announce(): Promise<void> {
    await this.redis.multi().set(this.key(this.id), JSON.stringify(this.caps), 'PX', REGISTRY_TTL_MS).sadd(this.setKey, this.id).exec();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.redis.multi().del(this.key(this.id)).srem(this.setKey, this.id).exec().catch(() => undefined);
  }

  /** The capabilities of the other live workers (read at most once a second; dead ones are forgotten). */
  private async otherWorkers(): Promise<WorkerCapabilities[]> {
    if (this.others && Date.now() - this.others.atMs < 1_000) return this.others.caps;
    const ids = (await this.redis.smembers(this.setKey)).filter((id) => id !== this.id);
    const raw = ids.length ? await this.redis.mget(ids.map((id) => this.key(id))) : [];
    const dead = ids.filter((_, i) => raw[i] === null);
    if (dead.length) await this.redis.srem(this.setKey, ...dead);
    const caps = raw.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as WorkerCapabilities);
    this.others = { atMs: Date.now(), caps };
    return caps;
  }

  /** Whether another live worker has what this job needs. */
  async anotherCanRun(data: Pick<JobData, 'target' | 'tls'>): Promise<boolean> {
    return (await this.otherWorkers()).some((caps) => missingFor(data, caps) === undefined);
  }
}

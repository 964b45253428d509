// What `npm run chaos` does to a running farm: its `bos-fleet worker` processes are SIGKILLed and
// restarted or frozen (SIGSTOP) past their job locks, its Redis is SIGKILLed and restarted from its AOF,
// frozen, or (--power-loss) brought back from an AOF up to a second old, as after a power failure of its
// host; with --miner-faults, miners also lose write replies, reboot and drop their connections. Its
// clients' connections to Redis are also cut at random (CLIENT KILL): a command Redis ran just before
// loses its reply, and ioredis sends it again on the new connection.
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, openSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { PACKAGE_ROOT } from '../core/proto.js';
import { startRedisServer, type LocalRedis } from '../redis/server.js';
import type { FleetControl } from '../sim/control.js';
import type { MinerFaults } from '../sim/faults.js';

export const CLI = path.join(PACKAGE_ROOT, 'bin', 'bos-fleet.js');

/** Counts of what was done, by kind. */
export type Events = Record<string, number>;

export interface DisorderOptions {
  dir: string;
  sim: FleetControl;
  /** Each miner's own faults (a miner's fault spell ends back in them). */
  faultsOf: (minerId: string) => MinerFaults;
  workers: number;
  /** `bos-fleet worker` flags after `--redis URL`. */
  workerArgs: string[];
  powerLoss: boolean;
  minerFaults: boolean;
  /** Mean pause between two events, ms. */
  gapMs: number;
  random: () => number;
  log: (line: string) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** How often the copy a power failure goes back to is taken (it is up to this old). */
const SNAPSHOT_MS = 700;
/** Miner faults: a lost-reply spell's length, a reboot's downtime. */
const FAULT_SPELL_MS = 4_000;
const REBOOT_DOWN_MS = 3_000;

export class Disorder {
  redis!: LocalRedis;
  private readonly workers: (ChildProcess | undefined)[] = [];
  private seq = 0;
  private snapshots?: NodeJS.Timeout;
  private readonly pending = new Set<NodeJS.Timeout>();
  readonly events: Events = {};

  constructor(private readonly o: DisorderOptions) {}

  /**
   * Power failures are made by bringing Redis back from an AOF copy up to 0.7 s old: what a host's
   * power failure costs a Redis that syncs its AOF once a second, so that is how it runs then (with
   * `always`, a power failure loses nothing Redis acknowledged).
   */
  private get fsync(): { appendfsync: 'everysec' | 'always' } {
    return { appendfsync: this.o.powerLoss ? 'everysec' : 'always' };
  }

  get url(): string {
    return this.redis.url;
  }

  async start(): Promise<void> {
    this.redis = await startRedisServer({ dir: path.join(this.o.dir, 'redis'), ...this.fsync });
    for (let i = 0; i < this.o.workers; i++) this.startWorker(i);
    if (this.o.powerLoss) this.snapshots = setInterval(() => this.snapshot(), SNAPSHOT_MS);
  }

  private startWorker(i: number): void {
    const logFile = path.join(this.o.dir, `worker-${i}-${++this.seq}.log`);
    const out = openSync(logFile, 'a');
    this.workers[i] = spawn(process.execPath, [CLI, 'worker', '--redis', this.url, ...this.o.workerArgs], { stdio: ['ignore', out, out] });
  }

  /** The AOF as it is now, for a power failure to go back to (copied aside, then swapped in whole). */
  private snapshot(): void {
    const aof = path.join(this.redis.dir, 'appendonlydir');
    const tmp = path.join(this.o.dir, 'snap.tmp');
    try {
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(tmp);
      cpSync(aof, path.join(tmp, 'appendonlydir'), { recursive: true });
      rmSync(path.join(this.o.dir, 'snap'), { recursive: true, force: true });
      renameSync(tmp, path.join(this.o.dir, 'snap'));
    } catch {
      // Redis was rewriting its AOF or was down: the previous copy stays
    }
  }

  private count(kind: string, n = 1): void {
    this.events[kind] = (this.events[kind] ?? 0) + n;
  }

  private pick(n: number): string[] {
    const miners = this.o.sim.miners;
    return Array.from({ length: n }, () => (miners[Math.floor(this.o.random() * miners.length)] as { id: string }).id);
  }

  private async restartRedis(fromSnapshot: boolean): Promise<void> {
    this.redis.process.kill('SIGKILL');
    await new Promise((r) => (this.redis.process.exitCode !== null || this.redis.process.signalCode !== null ? r(undefined) : this.redis.process.once('exit', r)));
    const snap = path.join(this.o.dir, 'snap', 'appendonlydir');
    if (fromSnapshot && existsSync(snap)) {
      const aof = path.join(this.redis.dir, 'appendonlydir');
      rmSync(aof, { recursive: true, force: true });
      cpSync(snap, aof, { recursive: true });
    }
    await sleep(300 + this.o.random() * 2_000);
    this.redis = await startRedisServer({ dir: this.redis.dir, port: this.redis.port, ...this.fsync });
  }

  private async minerEvent(): Promise<void> {
    const r = this.o.random();
    if (r < 0.33) {
      const ids = this.pick(5);
      this.count('minerLostReplies', ids.length);
      for (const id of ids) await this.o.sim.setFaults(id, { ...this.o.faultsOf(id), lostReply: true });
      const t = setTimeout(() => {
        this.pending.delete(t);
        for (const id of ids) void this.o.sim.setFaults(id, this.o.faultsOf(id)).catch(() => undefined);
      }, FAULT_SPELL_MS);
      this.pending.add(t);
    } else if (r < 0.66) {
      const ids = this.pick(5);
      this.count('minerReboots', ids.length);
      for (const id of ids) await this.o.sim.reboot(id, REBOOT_DOWN_MS);
    } else {
      const ids = this.pick(30);
      this.count('minerConnectionDrops', ids.length);
      for (const id of ids) await this.o.sim.dropConnections(id);
    }
  }

  /** Cuts every client's connection to Redis (but this one's); none when Redis is down. */
  private async cutConnections(): Promise<void> {
    const r = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    try {
      await r.connect();
      this.count('redisConnectionsCut', Number(await r.client('KILL', 'TYPE', 'normal', 'SKIPME', 'yes')));
    } catch {
      // Redis is being restarted or is frozen: no cut this time.
    } finally {
      r.disconnect();
    }
  }

  /** One event, at random. */
  async once(): Promise<void> {
    if (this.o.minerFaults) await this.minerEvent();
    if (this.o.random() < 0.4) await this.cutConnections();
    const r = this.o.random();
    const i = Math.floor(this.o.random() * this.o.workers);
    const worker = this.workers[i];
    if (r < 0.5 && worker) {
      this.count('workerKills');
      worker.kill('SIGKILL');
      await sleep(300 + this.o.random() * 1_500);
      this.startWorker(i);
    } else if (r < 0.75) {
      const power = this.o.powerLoss && this.o.random() < 0.6;
      this.count(power ? 'redisPowerLosses' : 'redisKills');
      await this.restartRedis(power);
    } else if (r < 0.85) {
      this.count('redisFreezes');
      this.redis.process.kill('SIGSTOP');
      await sleep(1_000 + this.o.random() * 6_000);
      this.redis.process.kill('SIGCONT');
    } else if (worker) {
      this.count('workerFreezes');
      worker.kill('SIGSTOP');
      await sleep(2_000 + this.o.random() * 5_000);
      worker.kill('SIGCONT');
    }
  }

  /** Events, `gapMs` apart on average, until `ms` have passed or `done()` says so; returns their counts. */
  async run(ms: number, done: () => Promise<boolean>): Promise<Events> {
    const before = { ...this.events };
    const end = Date.now() + ms;
    while (Date.now() < end && !(await done())) {
      await sleep(this.o.gapMs * (0.5 + this.o.random()));
      await this.once();
    }
    return Object.fromEntries(Object.entries(this.events).map(([k, n]) => [k, n - (before[k] ?? 0)]));
  }

  /** Workers stopped (SIGTERM, then SIGKILL after 5 s), Redis stopped, miners' faults cleared. */
  async stop(): Promise<void> {
    clearInterval(this.snapshots);
    for (const t of this.pending) clearTimeout(t);
    const exits = this.workers.map((w) =>
      w && w.exitCode === null && w.signalCode === null
        ? new Promise<void>((resolve) => {
            const kill = setTimeout(() => w.kill('SIGKILL'), 5_000);
            w.once('exit', () => (clearTimeout(kill), resolve()));
            w.kill('SIGCONT');
            w.kill('SIGTERM');
          })
        : Promise.resolve(),
    );
    await Promise.all(exits);
    this.redis?.process.kill('SIGCONT');
    await this.redis?.stop();
  }
}

// A simulated fleet split across child processes, so 10,000–100,000 miners fit the per-process fd limit.
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { PACKAGE_ROOT } from '../core/proto.js';
import type { FleetControl, MutationRecord, SimMinerInfo } from './control.js';
import type { MinerFaults } from './faults.js';
import type { SimFleetOptions, SimMinerSpec } from './fleet.js';
import type { SimMinerState } from './miner.js';

/** Miners per shard: a listener and an accepted socket each, well under 20,000 fds. */
export const MINERS_PER_SHARD = 4_000;

export const SHARD_ENTRY = path.join(PACKAGE_ROOT, 'dist', 'sim', 'shard-main.js');

interface Reply {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: string;
}

class Shard {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  constructor(readonly child: ChildProcess) {
    child.on('message', (msg: Reply) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new Error(msg.error ?? 'shard error'));
    });
    child.on('exit', (code, signal) => {
      for (const p of this.pending.values()) p.reject(new Error(`sim shard exited with ${signal ?? `code ${code}`}`));
      this.pending.clear();
    });
    // A shard that died (e.g. Ctrl-C reaches the whole process group) fails its calls, never the process.
    child.on('error', () => undefined);
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  call<T>(op: string, ...args: unknown[]): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      if (this.exited || !this.child.connected) return reject(new Error(`sim shard is gone (${this.exited ? 'exited' : 'disconnected'})`));
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, op, args }, (err) => {
        if (!err || !this.pending.delete(id)) return;
        reject(err);
      });
    });
  }
}

export class SimCluster implements FleetControl {
  readonly miners: SimMinerInfo[];

  private constructor(
    private readonly shards: Shard[],
    private readonly shardOf: Map<string, Shard>,
    miners: SimMinerInfo[],
  ) {
    this.miners = miners;
  }

  static async start(opts: SimFleetOptions, perShard = MINERS_PER_SHARD): Promise<SimCluster> {
    const shards: Shard[] = [];
    const shardOf = new Map<string, Shard>();
    const groups: SimMinerSpec[][] = [];
    for (let i = 0; i < opts.miners.length; i += perShard) groups.push(opts.miners.slice(i, i + perShard));
    try {
      await Promise.all(
        groups.map(async (miners) => {
          const child = fork(SHARD_ENTRY, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
          const shard = new Shard(child);
          shards.push(shard);
          await shard.call('start', { ...opts, miners });
          for (const m of miners) shardOf.set(m.id, shard);
        }),
      );
    } catch (err) {
      for (const s of shards) s.child.kill('SIGKILL');
      throw err;
    }
    return new SimCluster(shards, shardOf, opts.miners.map(({ id, host, port }) => ({ id, host, port })));
  }

  /** Process ids of the shard processes (the benchmark reads their CPU time). */
  pids(): number[] {
    return this.shards.flatMap((s) => (s.child.pid === undefined ? [] : [s.child.pid]));
  }

  private shard(minerId: string): Shard {
    const s = this.shardOf.get(minerId);
    if (!s) throw new Error(`sim: no miner "${minerId}"`);
    return s;
  }

  state(minerId: string): Promise<SimMinerState> {
    return this.shard(minerId).call('state', minerId);
  }
  setFaults(minerId: string, faults: MinerFaults): Promise<void> {
    return this.shard(minerId).call('setFaults', minerId, faults);
  }
  async mutations(minerId?: string): Promise<MutationRecord[]> {
    if (minerId !== undefined) return this.shard(minerId).call('mutations', minerId);
    const all = await Promise.all(this.shards.map((s) => s.call<MutationRecord[]>('mutations')));
    return all.flat();
  }
  callCounts(minerId: string): Promise<Record<string, number>> {
    return this.shard(minerId).call('callCounts', minerId);
  }
  async expireSessions(minerId?: string): Promise<void> {
    if (minerId !== undefined) return this.shard(minerId).call('expireSessions', minerId);
    await Promise.all(this.shards.map((s) => s.call('expireSessions')));
  }
  reboot(minerId: string, downMs: number): Promise<void> {
    return this.shard(minerId).call('reboot', minerId, downMs);
  }
  replaceMachine(minerId: string, macAddress: string): Promise<void> {
    return this.shard(minerId).call('replaceMachine', minerId, macAddress);
  }
  dropConnections(minerId: string): Promise<void> {
    return this.shard(minerId).call('dropConnections', minerId);
  }
  floodStatus(minerId: string, count: number, padBytes?: number): Promise<void> {
    return this.shard(minerId).call('floodStatus', minerId, count, padBytes);
  }
  async close(): Promise<void> {
    await Promise.all(
      this.shards.map(async (s) => {
        const exited = new Promise<void>((resolve) => {
          if (s.exited) resolve();
          else s.child.once('exit', () => resolve());
        });
        s.call('close').catch(() => undefined);
        const timer = setTimeout(() => s.child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }),
    );
  }
}

// Runs the built CLI (dist/) as a separate process, as an operator would.
import { spawn, type ChildProcess } from 'node:child_process';
import { expect } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PACKAGE_ROOT } from '../../src/core/proto.js';
import { Redis, type RedisOptions } from 'ioredis';
import { SIM_PASSWORD, SIM_USERNAME } from '../../src/sim/miner.js';
import { inventoryCsv } from '../../src/sim/plan.js';
import type { MinerFaults } from '../../src/sim/faults.js';
import { startRedisFleet, type TestFleet } from './fleet.js';
import { until } from './until.js';

export const CLI = path.join(PACKAGE_ROOT, 'bin', 'bos-fleet.js');

export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess & { output: () => { stdout: string; stderr: string } } {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, BOS_FLEET_HOME: path.join(os.tmpdir(), 'bos-fleet-test-home'), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => (stdout += d));
  child.stderr?.on('data', (d) => (stderr += d));
  return Object.assign(child, { output: () => ({ stdout, stderr }) });
}

/** Runs the CLI to its end: `code` is its exit code, or the signal that ended it. */
export async function runCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<{ code: number | NodeJS.Signals | null; stdout: string; stderr: string }> {
  const child = spawnCli(args, env);
  const code = await new Promise<number | NodeJS.Signals | null>((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (c, sig) => {
      clearTimeout(t);
      resolve(c ?? sig);
    });
  });
  return { code, ...child.output() };
}

/** Its exit code, or the signal that ended it (so that a failed expectation names it: SIGABRT, not null). */
export function exited(child: ChildProcess): Promise<number | NodeJS.Signals | null> {
  return new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(child.exitCode ?? child.signalCode) : child.on('exit', (c, sig) => resolve(c ?? sig))));
}

/** Its exit code; fails after `ms` (before the test's own timeout, so that its clean-up runs). */
export function exitedWithin(child: ChildProcess, ms = 20_000): Promise<number | NodeJS.Signals | null> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`still running after ${ms} ms: ${child.spawnargs.slice(2).join(' ')}`)), ms)));
  return Promise.race([exited(child), late]).finally(() => clearTimeout(timer));
}

/**
 * Waits for a CLI process's end (`within` ms at most, when given) and expects exit code `code`; a
 * mismatch shows what ended it (a signal's name) and the end of its output, so a rare failure says why.
 */
export async function expectExit(child: ReturnType<typeof spawnCli>, code: number, opts: { within?: number } = {}): Promise<void> {
  const shown = () => `stderr: …${child.output().stderr.slice(-1500)}\nstdout: …${child.output().stdout.slice(-500)}`;
  const got = await (opts.within === undefined ? exited(child) : exitedWithin(child, opts.within)).catch((err: unknown) => {
    throw new Error(`${err instanceof Error ? err.message : String(err)}; ${shown()}`);
  });
  expect(got, `ended by ${got}; ${shown()}`).toBe(code);
}

/** Writes an inventory and a credentials file for a test fleet; returns their paths. */
export function writeFleetFiles(inventoryText: string): { dir: string; inventory: string; credentials: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-cli-'));
  const inventory = path.join(dir, 'farm.csv');
  const credentials = path.join(dir, 'creds.json');
  writeFileSync(inventory, inventoryText);
  writeFileSync(credentials, JSON.stringify({ default: { username: SIM_USERNAME, password: SIM_PASSWORD } }), { mode: 0o600 });
  return { dir, inventory, credentials };
}

export type FleetFiles = ReturnType<typeof writeFleetFiles>;

/** A test fleet for CLI tests: the fleet, its inventory and credentials files, a client of the test Redis. */
export interface CliFleet {
  tf: TestFleet;
  files: FleetFiles;
  redis: Redis;
  /** Disconnects, stops the fleet and removes the files. */
  close(): Promise<void>;
}

export async function startCliFleet(count: number, base: string, faultsOf?: (i: number) => MinerFaults, redisOptions: RedisOptions = {}, fleetOptions: { rebootDownMs?: number } = {}): Promise<CliFleet> {
  const rf = await startRedisFleet(count, base, faultsOf, redisOptions, fleetOptions);
  const files = writeFleetFiles(inventoryCsv(rf.tf.fleet.miners.map((m, index) => ({ ...m, index }))));
  return {
    tf: rf.tf,
    files,
    redis: rf.redis,
    close: async () => {
      await rf.close();
      rmSync(files.dir, { recursive: true, force: true });
    },
  };
}

/**
 * `rollout start --wait --no-local-worker` on one miner of `files`' inventory with no worker running:
 * the rollout waits in Redis, and so does the command (once it has warned that no worker runs). The
 * command goes into `started` at once, so that the test's clean-up kills it whatever fails.
 */
export async function startWaitingRollout(
  o: { files: FleetFiles; minerId: string; redis: Redis; redisUrl: string; prefix: string; started: ReturnType<typeof spawnCli>[] },
): Promise<{ start: ReturnType<typeof spawnCli>; rolloutId: string }> {
  const start = spawnCli(['rollout', 'start', '--power-target', '2600', '--inventory', o.files.inventory, '--miner', o.minerId, '--wait', '--no-local-worker', '--redis', o.redisUrl, '--prefix', o.prefix]);
  o.started.push(start);
  await until(async () => start.output().stderr.includes('WARNING'), 15_000, 20);
  const rolloutId = (await o.redis.keys(`${o.prefix}:rollout:ro-*`)).map((k) => k.split(':')[2]).at(0);
  if (!rolloutId) throw new Error(`no rollout in Redis after: ${JSON.stringify(start.output())}`);
  return { start, rolloutId };
}

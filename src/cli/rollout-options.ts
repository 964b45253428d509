// Turns `rollout start` flags into a validated mutation spec and gate settings; the checks and the
// confirmation before a rollout starts.
import type { Command } from 'commander';
import { createInterface } from 'node:readline/promises';
import { readJsonFile } from '../fleet/json-file.js';
import { actionSpec, ACTIONS, MAX_HASHRATE_TARGET_THS, MAX_POWER_TARGET_W, operationOf, poolPasswordRefs, poolsFileSchema, type Action, type MutationSpec } from '../workers/ops/mutation-spec.js';
import { parseDurationMs } from '../fleet/ids-and-durations.js';
import { digits } from './parse.js';
import { credentialsHelp, missingProfiles, type CredentialProfiles } from '../fleet/credentials.js';
import { parsePercent, parseWaves } from '../rollout/waves.js';
import { firstIssue, issueText } from '../fleet/zod-issue.js';

export interface OperationFlags {
  powerTarget?: string;
  hashrateTarget?: string;
  pools?: string;
  action?: string;
}

export interface GateFlags {
  waves: string;
  maxFailureRate: string;
  minSample: number;
  pauseBetween: string;
  maxInFlightPerSite?: number;
}

export function specFromFlags(f: OperationFlags, nowMs = Date.now()): MutationSpec {
  const given = (['powerTarget', 'hashrateTarget', 'pools', 'action'] as const).filter((k) => f[k] !== undefined);
  if (given.length !== 1) {
    throw new Error(`give exactly one of --power-target, --hashrate-target, --pools, --action (got ${given.length ? given.map((g) => `--${g.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ') : 'none'})`);
  }
  // Digits only: Number() would also take 1e30, 0x10 and " 12 ".
  if (f.powerTarget !== undefined) {
    const watts = digits(f.powerTarget);
    if (!(watts > 0 && watts <= MAX_POWER_TARGET_W)) throw new Error(`--power-target must be a positive whole number of watts up to ${MAX_POWER_TARGET_W}, got "${f.powerTarget}"`);
    return { kind: 'power-target', watts };
  }
  if (f.hashrateTarget !== undefined) {
    const ths = /^\d+(\.\d+)?$/.test(f.hashrateTarget) ? Number(f.hashrateTarget) : NaN;
    if (!(ths > 0 && ths <= MAX_HASHRATE_TARGET_THS)) throw new Error(`--hashrate-target must be a positive number of TH/s up to ${MAX_HASHRATE_TARGET_THS}, got "${f.hashrateTarget}"`);
    return { kind: 'hashrate-target', terahashPerSecond: ths };
  }
  if (f.pools !== undefined) {
    const raw = readJsonFile(f.pools, `--pools ${f.pools}`);
    const r = poolsFileSchema.safeParse(raw);
    if (!r.success) {
      const issue = firstIssue(r.error);
      const inline = issue?.code === 'unrecognized_keys' && issue.keys.includes('password') ? '; a pool password is never written in the file: passwordRef names the credentials profile whose password it is' : '';
      throw new Error(`--pools ${f.pools}: ${issue?.path.join('.') || '(top level)'}: ${issueText(issue)}${inline} (expected [{"name", "quota"?, "pools": [{"url", "user", "passwordRef"?, "enabled"?}]}])`);
    }
    return { kind: 'pools', groups: r.data };
  }
  if (!(ACTIONS as readonly string[]).includes(f.action ?? '')) throw new Error(`--action must be one of ${ACTIONS.join(', ')}, got "${f.action}"`);
  return actionSpec(f.action as Action, nowMs);
}

export function gatesFromFlags(g: GateFlags) {
  return {
    waves: parseWaves(g.waves),
    maxFailureRate: parsePercent(g.maxFailureRate, '--max-failure-rate'),
    minSample: g.minSample,
    pauseBetweenMs: parseDurationMs(g.pauseBetween, '--pause-between', { unitRequired: true }),
    ...(g.maxInFlightPerSite ? { maxInFlightPerSite: g.maxInFlightPerSite } : {}),
  };
}

export function parseAt(text: string | undefined, nowMs = Date.now()): number | undefined {
  if (text === undefined) return undefined;
  // A time zone is required: "2026-12-01 10:00" would be read in this host's zone, which need not
  // be the operator's nor the farm's.
  const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/i.exec(text.trim());
  const t = m ? Date.parse(text.trim()) : NaN;
  if (!m || Number.isNaN(t)) throw new Error(`--at must be an ISO time with its zone, like 2026-11-24T14:00:00Z (UTC) or 2026-11-24T15:00:00+01:00, got "${text}"`);
  // Date.parse rolls a day the month lacks over into the next month (02-30 is read as 03-02) and
  // 24:00 into the next day: such a typo would start the change on a day nobody asked for.
  const [year, month, day, hour] = [m[1], m[2], m[3], m[4]].map(Number) as [number, number, number, number];
  const monthDays = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (day < 1 || day > monthDays || hour > 23) throw new Error(`--at "${text}" is not a real time: ${day > monthDays ? `${year}-${m[2]} has ${monthDays} days` : 'hours go from 00 to 23'}`);
  if (t < nowMs - 60_000) throw new Error(`--at "${text}" is in the past`);
  return t;
}

export { operationOf };

/**
 * The credentials profiles a pools change names as pool passwords must be among `credentials` when
 * this process's own worker does the change (a dry run, or --wait): otherwise every miner would be
 * refused one by one for the same missing profile.
 */
export function assertPoolRefs(spec: MutationSpec, credentials: CredentialProfiles, source: string, credentialsFile: string | undefined): void {
  const missing = missingProfiles(poolPasswordRefs(spec), credentials);
  if (missing.length) {
    throw new Error(`${source}: passwordRef${missing.length > 1 ? 's' : ''} ${missing.map((m) => `"${m}"`).join(', ')} name${missing.length > 1 ? '' : 's'} no credentials profile: ${credentialsHelp(credentialsFile, missing.length)}`);
  }
}

/** `--pool-password-ref` of a rollback, by hand or scheduled. */
export function poolPasswordRefOption(cmd: Command): Command {
  return cmd.option('--pool-password-ref <profile>', 'rolling back pools: the credentials profile whose password the restored pools get (a miner never reports its pool passwords)');
}

/** Said when a rollback of pools goes without --pool-password-ref: `restorer` ("this rollback") writes them with no password. */
export function warnNoPoolPassword(restorer: string): void {
  process.stderr.write(`bos-fleet: a miner never reports its pool passwords: the pools ${restorer} restores are written with no password (pass --pool-password-ref PROFILE to give them the password of that credentials profile)\n`);
}

/**
 * Runs the checks of what `--wait`'s local worker needs (profiles, pool passwords, TLS); when one
 * fails, the error also says how to leave the work to the running `bos-fleet worker` processes.
 */
export function checkLocalWorker(check: () => void): void {
  try {
    check();
  } catch (e) {
    throw new Error(`${(e as Error).message} — or, for --wait, add --no-local-worker to leave the work to the running \`bos-fleet worker\` processes (they need them)`);
  }
}

/** Rollouts over more miners than this ask for confirmation unless --yes. */
export const CONFIRM_THRESHOLD = 50;

/**
 * Asks on the terminal before changing more than CONFIRM_THRESHOLD miners; without one, --yes is needed.
 * `schedule` (when it fires, e.g. "at every tick, every 24h, the first at once (…)") asks for a
 * schedule's changes instead of a rollout's.
 */
export async function confirm(miners: number, what: string, yes: boolean | undefined, schedule?: string): Promise<void> {
  if (yes || miners <= CONFIRM_THRESHOLD) return;
  const change = `${miners} miners (${what})${schedule ? ` ${schedule}` : ''}`;
  if (!process.stdin.isTTY) throw new Error(`this ${schedule ? 'schedule' : 'rollout'} changes ${change}; pass --yes to confirm`);
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const answer = await rl.question(`Change ${change}? Type "yes" to continue: `);
  rl.close();
  if (answer.trim() !== 'yes') throw new Error(schedule ? 'not confirmed: no schedule was added' : 'not confirmed: nothing was changed');
}

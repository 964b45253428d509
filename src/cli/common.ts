// Pieces shared by the CLI commands: options parsing (the Redis connection: connect-redis.ts).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { z } from 'zod';
import { loadTlsMaterial, tlsProfileSchema, type TlsProfile } from '../core/tls.js';
import { shownRedisUrl } from '../redis/resolve.js';
import { DEFAULT_PREFIX } from '../fleet/keys.js';
import { parseDurationMs } from '../fleet/ids-and-durations.js';
import { DEFAULT_RETENTION, type RetentionPolicy } from '../fleet/retention.js';
import { positiveInt } from './parse.js';
import { issueText } from '../fleet/zod-issue.js';
import { readJsonFile } from '../fleet/json-file.js';
import { whenOutputLost } from './hang-up.js';
import { DEFAULT_MAX_CONNECTIONS } from '../core/options.js';
import { consumerSlots } from '../workers/worker.js';
import { loadInventory, type Inventory } from '../producer/inventory.js';
import { isSelecting, selectionText, selectTargets, type Selection } from '../producer/selection.js';

/** The flags a printed command needs to reach the same Redis and prefix (a password shown as ***). */
export const whereFlags = (flags: { redis?: string; prefix: string }): string =>
  (flags.redis ? ` --redis ${shownRedisUrl(flags.redis)}` : '') + (flags.prefix !== DEFAULT_PREFIX ? ` --prefix '${flags.prefix}'` : '');

/** `--tls FILE`: JSON {site: {caFile, certFile?, keyFile?, serverName?}}, '*' for every site. */
export function loadTlsSites(file: string | undefined): Record<string, TlsProfile> | undefined {
  if (!file) return undefined;
  const raw = readJsonFile(file, `--tls ${file}`);
  const r = z.record(z.string(), tlsProfileSchema).safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new Error(`--tls ${file}: ${issue?.path.join('.') || '(top level)'} ${issueText(issue)}`);
  }
  // A relative path is relative to the --tls file (as in other tools' config files), not to wherever
  // the command runs from: the same file then works from cron, a shell, or a container.
  const dir = path.dirname(path.resolve(file));
  const at = (p: string) => path.resolve(dir, p);
  for (const profile of Object.values(r.data)) {
    profile.caFile = at(profile.caFile);
    if (profile.certFile) profile.certFile = at(profile.certFile);
    if (profile.keyFile) profile.keyFile = at(profile.keyFile);
  }
  // Read and check every site's files now: a bad path fails at start-up, not in a job or a thread.
  for (const [site, profile] of Object.entries(r.data)) {
    try {
      loadTlsMaterial(profile, site);
    } catch (err) {
      throw new Error(`--tls ${file}: site "${site}": ${(err as Error).message}`);
    }
  }
  return r.data;
}

/**
 * Ctrl-C (or SIGTERM) while a command works: the first asks it to stop cleanly (`what` says what that
 * means), a second quits at once. A hang-up (SIGHUP: its terminal closed, an ssh session dropped) or
 * its output going away asks the same clean stop, and never quits at once (a hang-up often comes
 * twice). `announce` says why it stops (default: `what`, on stderr). `dispose()` removes the handlers.
 */
export function interruptible(
  what: string,
  announce: (reason: string) => void = (reason) => void process.stderr.write(`\nbos-fleet: ${reason}: ${what}${reason === 'SIGHUP' || reason === 'output closed' ? '' : ` (${reason} again to quit now)`}\n`),
): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const stop = (reason: string) => {
    if (controller.signal.aborted) return;
    controller.abort();
    announce(reason);
  };
  const onSignal = (sig: NodeJS.Signals) => {
    if (!controller.signal.aborted) return stop(sig);
    process.stderr.write(`\nbos-fleet: ${sig} again: quitting now\n`);
    process.exit(130);
  };
  const onHangUp = () => stop('SIGHUP');
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onHangUp);
  whenOutputLost(() => stop('output closed'));
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('SIGHUP', onHangUp);
      whenOutputLost(undefined);
    },
  };
}

export interface RetentionFlags {
  keepRuns?: number;
  keepFor?: string;
}

/** `--keep-runs` / `--keep-for` of the commands that create poll runs or scheduled rollouts: `what` of `whose` they keep. */
export function retentionOptions(cmd: Command, whose: string, what = 'runs'): Command {
  return cmd
    .option('--keep-runs <n>', `finished ${what} ${whose} kept in Redis, newest first; older ones are deleted (default ${DEFAULT_RETENTION.keepRuns})`, positiveInt('--keep-runs'))
    .option('--keep-for <duration>', `finished ${what} ${whose} older than this are deleted (e.g. 24h, 7d; default 7d)`);
}

/** The policy the flags ask for, over the defaults; undefined when neither flag is given. */
export function retentionFrom(flags: RetentionFlags): RetentionPolicy | undefined {
  if (flags.keepRuns === undefined && flags.keepFor === undefined) return undefined;
  return {
    keepRuns: flags.keepRuns ?? DEFAULT_RETENTION.keepRuns,
    keepForMs: flags.keepFor === undefined ? DEFAULT_RETENTION.keepForMs : keepForMs(flags.keepFor),
  };
}

/**
 * `--keep-for`: a unit is required (a bare `7`, read as seconds, would delete every finished run older
 * than 7 s), and at least a minute (finished runs would go before anyone read them).
 */
function keepForMs(text: string): number {
  const ms = parseDurationMs(text, '--keep-for', { example: '24h or 7d', unitRequired: true });
  if (ms < 60_000) throw new Error(`--keep-for must be at least 1m (finished runs would be deleted before anyone read them), got "${text}"`);
  return ms;
}

/** `--miner`, `--site`, `--tag` (each repeatable) of the commands that take an inventory. */
export function selectionOptions(cmd: Command): Command {
  // An empty value would pick the miners with no site (or refer to nothing): refused by name.
  const collect = (flag: string) => (v: string, prev: string[] = []) => {
    if (!v.trim()) throw new InvalidArgumentError(`${flag} needs a value, got "${v}"`);
    return [...prev, v.trim()];
  };
  return cmd
    .option('--miner <id>', 'only this miner of the inventory (repeat for more)', collect('--miner'))
    .option('--site <site>', 'only the miners at this site (repeat: at any of them)', collect('--site'))
    .option('--tag <tag>', 'only the miners with this tag (repeat: with every one)', collect('--tag'));
}

export interface SelectionFlags {
  inventory: string;
  miner?: string[];
  site?: string[];
  tag?: string[];
}

/** The selection flags as a Selection. */
export const selectionFrom = (flags: Omit<SelectionFlags, 'inventory'>): Selection => ({ miners: flags.miner ?? [], sites: flags.site ?? [], tags: flags.tag ?? [] });

/** The inventory cut to the selection flags; says on stderr how many of its miners they picked. */
export function loadSelected(flags: SelectionFlags): Inventory {
  return selectAndSay(loadInventory(flags.inventory), selectionFrom(flags));
}

/** `from`'s miners that `selection` picks (all without one), saying how many of how many; `has` names whose miners they are in errors. */
export function selectAndSay(from: Inventory, selection: Selection, has?: string, of = `the ${from.targets.length} miners of ${from.file}`): Inventory {
  if (!isSelecting(selection)) return from;
  const picked = selectTargets(from, selection, has);
  process.stderr.write(`bos-fleet: ${picked.targets.length} of ${of} (${selectionText(selection)})\n`);
  return picked;
}

/** This process's soft limit on open files (Linux: /proc/self/limits), if it can be read. */
export function openFilesLimit(limitsText?: string): number | undefined {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return undefined;
    }
  }
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(text);
  if (!m?.[1] || m[1] === 'unlimited') return undefined;
  return Number(m[1]);
}

/**
 * The pool and concurrency of a worker this command runs itself (`poll`, `rollout … --wait`, a dry
 * run), fitted under the open-files limit (see fitDescriptors; the warning goes to stderr): `pool`
 * when it had to be smaller than the default, and the concurrency to run at.
 */
export function localPoolOptions(threads: number, concurrency: number, concurrencyFlag = true): { concurrency: number; coreOptions: { pool?: { maxConnections: number } } } {
  const fds = fitDescriptors({ threads, maxConnections: DEFAULT_MAX_CONNECTIONS, concurrency, concurrencyFlag });
  if (fds.warning) process.stderr.write(`bos-fleet: WARNING: ${fds.warning}\n`);
  return { concurrency: fds.concurrency, coreOptions: fds.maxConnections === DEFAULT_MAX_CONNECTIONS ? {} : { pool: { maxConnections: fds.maxConnections } } };
}

/**
 * Fits the miner channels a worker may keep open (every thread its own pool) and its Redis
 * connections under the open-files limit: past it, connects fail with EMFILE mid-run. A pool keeps
 * every channel a call is using, so one pool may hold `concurrency` channels when that is more than
 * --max-connections, plus the sockets of channels it has just closed. When a smaller
 * --max-connections fits, that is what the worker uses (its pool then closes idle channels sooner);
 * when even the miners in flight do not fit, it runs fewer at once — the largest concurrency that
 * fits — rather than leave miners without a connection (their outcomes would say
 * WORKER_OUT_OF_RESOURCES instead of the truth about the miner). The warning says which.
 * `consumers`: the --consumers flag (default: one per JOBS_PER_CONSUMER jobs in flight).
 */
export function fitDescriptors(
  o: { threads: number; maxConnections: number; concurrency: number; consumers?: number; /** false: the command has no --concurrency flag to name. */ concurrencyFlag?: boolean },
  limit = openFilesLimit(),
): { maxConnections: number; concurrency: number; warning?: string } {
  const pools = Math.max(1, o.threads); // --threads 0: one pool, in the main thread
  const consumers = (c: number) => consumerSlots(c, o.consumers).length;
  // Redis connections, the process's own files, and a socket per miner in flight for channels the
  // pool has closed: HTTP/2's graceful close keeps a socket for a few event-loop turns, and a pool
  // smaller than the fleet closes one channel for every miner it opens (measured: up to 0.7 of the
  // miners in flight at once).
  const reserve = (c: number) => 2 * consumers(c) + 64 + c;
  const needed = (m: number, c: number) => (pools - 1) * m + Math.max(m, c) + reserve(c);
  const asked = { maxConnections: o.maxConnections, concurrency: o.concurrency };
  if (limit === undefined || needed(o.maxConnections, o.concurrency) <= limit) return asked;
  // The largest pool size that fits with `c` miners in flight (0: none): above `c` every pool grows
  // with it; below, the first pool holds the miners in flight anyway.
  const poolFit = (c: number) => {
    const room = limit - reserve(c);
    const even = Math.floor(room / pools);
    const m = Math.min(o.maxConnections, even >= c ? even : pools > 1 ? Math.floor((room - c) / (pools - 1)) : 0);
    return Math.max(0, m);
  };
  const held = o.concurrency > o.maxConnections;
  const channels = needed(o.maxConnections, o.concurrency) - reserve(o.concurrency);
  const what = held
    ? `${channels} miner channels: a pool keeps the channel of each of --concurrency ${o.concurrency} miners in flight${pools > 1 ? `, the other ${pools - 1} thread(s) --max-connections ${o.maxConnections} each` : ''}`
    : `${pools} thread(s) × --max-connections ${o.maxConnections} miner channels`;
  const over = `up to ${needed(o.maxConnections, o.concurrency)} open files may be needed (${what}; 2 Redis connections per BullMQ consumer × ${consumers(o.concurrency)}; ${o.concurrency} for connections being closed), above this process's limit of ${limit} (ulimit -n)`;
  const fit = poolFit(o.concurrency);
  if (fit >= 1) {
    return { ...asked, maxConnections: fit, warning: `${over}: using --max-connections ${fit} instead (an idle channel is closed sooner, and reopened when its miner is next called); raise the limit to keep more open` };
  }
  // Even the miners in flight do not fit: the most that do, each thread still keeping its share of
  // them open between calls (the need grows with the concurrency).
  const fitsWith = (c: number) => poolFit(c) >= Math.min(o.maxConnections, Math.ceil(c / pools));
  let lo = 0;
  let hi = o.concurrency - 1;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (fitsWith(mid)) lo = mid;
    else hi = mid - 1;
  }
  if (lo < 1) return { maxConnections: 1, concurrency: 1, warning: `${over}: not even one miner in flight fits; raise the limit (running one miner at a time meanwhile)` };
  const maxConnections = poolFit(lo);
  const smaller = maxConnections < o.maxConnections;
  const instead =
    o.concurrencyFlag === false
      ? `running ${lo} miners at once instead of ${o.concurrency}${smaller ? `, keeping at most ${maxConnections} connections` : ''}`
      : `using --concurrency ${lo}${smaller ? ` and --max-connections ${maxConnections}` : ''} instead`;
  return { maxConnections, concurrency: lo, warning: `${over}: ${instead}, so that every miner in flight has a connection; raise the limit to run more at once` };
}

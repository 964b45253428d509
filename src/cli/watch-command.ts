// `bos-fleet watch`: follow miners' status live over GetMinerStatus streams — a rack coming back
// after a pause or a reboot — with no Redis and no record: it reads, and changes nothing.
import { InvalidArgumentError, type Command } from 'commander';
import { FleetCore, siteTlsLookup, type MinerClient, type MinerTarget } from '../core/index.js';
import { hostPort } from '../core/channel-options.js';
import { assertSameMiner } from '../workers/ops/identity.js';
import { loadCredentialProfiles, loginOf } from '../fleet/credentials.js';
import { durationText, parseDurationMs } from '../fleet/ids-and-durations.js';
import { assertTargetProfiles } from '../producer/run-local.js';
import { statusName, watchStatuses, type WatchEvent } from '../watch/status-watch.js';
import { MAX_CONCURRENCY } from '../workers/worker.js';
import { interruptible, loadSelected, loadTlsSites, openFilesLimit, selectionOptions, type SelectionFlags } from './common.js';
import { printable } from './render.js';

/** The statuses a miner reports (MinerStatus without UNSPECIFIED), as `--until` takes them. */
export const WATCH_STATUSES = ['NORMAL', 'PAUSED', 'NOT_STARTED', 'SUSPENDED', 'RESTRICTED'] as const;
const MIN_TIMEOUT_MS = 1_000;
const MAX_TIMEOUT_MS = 7 * 86_400_000;
/** Descriptors kept for the process itself (stdio, the event loop, grpc-js): the rest hold one stream each. */
const OWN_FILES = 64;
/** Longest wait between two tries to reach a miner that is down: its return is reported this late at most. */
const RECONNECT_MAX_MS = 3_000;
/** Miners named in a closing line; the events above name every one. */
const LISTED = 20;

interface WatchCliOptions extends SelectionFlags {
  credentials?: string;
  tls?: string;
  until?: string;
  timeout?: string;
  json?: boolean;
}

function untilOption(value: string): string {
  const status = statusName(value.trim().toUpperCase());
  if (!(WATCH_STATUSES as readonly string[]).includes(status)) throw new InvalidArgumentError(`--until must be one of ${WATCH_STATUSES.join(', ')}, got "${value}"`);
  return status;
}

export function registerWatch(program: Command): void {
  const watch = program
    .command('watch')
    .description("follow miners' status live (GetMinerStatus streams): each change as it happens, outages and returns; --until waits for a status")
    .requiredOption('--inventory <file>', 'inventory CSV (header row) or JSON: id, host, port, site, tags, credentials');
  selectionOptions(watch)
    .option('--credentials <file>', 'credential profiles JSON {"profile": {"username", "password"}} (default profile also from BOS_FLEET_USERNAME / BOS_FLEET_PASSWORD)')
    .option('--tls <file>', 'TLS per site: JSON {"site or *": {"caFile", "certFile"?, "keyFile"?, "serverName"?}}')
    .option('--until <status>', `stop once every watched miner reports this status (${WATCH_STATUSES.join(', ')}): exit 0`, untilOption)
    .option('--timeout <duration>', 'with --until: give up after this long (e.g. 90s, 10m; at most 7d) and exit 2, naming the miners not there')
    .option('--json', 'one JSON object per line and event: {at, minerId, host, port, event: "status"|"lost"|"stopped", status?, previous?, downMs?, code?, message?, suggestion?}, and a last {event: "end", result, until?, watched, notThere}')
    .action(async (opts: WatchCliOptions) => {
      let timeoutMs: number | undefined;
      if (opts.timeout !== undefined) {
        if (!opts.until) throw new Error('--timeout goes with --until (without it, a watch runs until Ctrl-C)');
        timeoutMs = parseDurationMs(opts.timeout, '--timeout', { unitRequired: true, example: '90s or 10m' });
        if (timeoutMs < MIN_TIMEOUT_MS || timeoutMs > MAX_TIMEOUT_MS) throw new Error(`--timeout must be from 1s to 7d, got "${opts.timeout}"`);
      }
      const selected = loadSelected(opts).targets;
      if (selected.length > MAX_CONCURRENCY) throw new Error(`watch keeps a stream open per miner: at most ${MAX_CONCURRENCY} at once, and ${selected.length} miners of inventory ${opts.inventory} are selected (pick part of it with --site, --tag or --miner)`);
      const limit = openFilesLimit();
      if (limit !== undefined && selected.length + OWN_FILES > limit) {
        throw new Error(`watch keeps a connection open per miner: ${selected.length} miners need about ${selected.length + OWN_FILES} open files, above this process's limit of ${limit} (ulimit -n): raise it, or watch fewer miners`);
      }
      const credentials = loadCredentialProfiles(opts.credentials);
      assertTargetProfiles(selected, `inventory ${opts.inventory}`, credentials, opts.credentials);
      const tls = siteTlsLookup(loadTlsSites(opts.tls));
      const targets: MinerTarget[] = selected.map((t) => {
        const siteTls = tls.forSite(t.site);
        return { id: t.minerId, host: t.host, port: t.port, credentials: loginOf(credentials, t.credentials)!, ...(siteTls ? { tls: siteTls } : {}) };
      });
      const where = new Map(selected.map((t) => [t.minerId, t]));
      // With the inventory's MAC: the machine answering is that miner, at each new subscription.
      const verify = selected.some((t) => t.mac) ? async (miner: MinerClient) => assertSameMiner(where.get(miner.target.id)!, (await miner.getMinerDetails()).macAddress) : undefined;
      const idWidth = Math.max(...selected.map((t) => t.minerId.length));
      const addrWidth = Math.max(...selected.map((t) => hostPort(t.host, t.port).length));

      // A stream holds its channel: the pool keeps one per watched miner.
      // A miner back from an outage is seen within RECONNECT_MAX_MS (the stream's backoff cap).
      const core = new FleetCore({ pool: { maxConnections: Math.max(selected.length, 1) }, stream: { reconnectMaxDelayMs: RECONNECT_MAX_MS } });
      const stop = interruptible('stopping the watch', (reason) => void process.stderr.write(`\nbos-fleet: ${reason}: stopping the watch\n`));
      const finished = new AbortController(); // --until met (or out of reach), or --timeout
      const latest = new Map<string, WatchEvent>();
      const there = new Set<string>(); // with --until: the miners at that status now
      const stopped = new Set<string>();
      const started = Date.now();
      let end: 'reached' | 'out of reach' | 'timeout' | undefined;
      const print = (e: WatchEvent) => {
        latest.set(e.minerId, e);
        const at = where.get(e.minerId)!;
        if (opts.json) {
          const base = { at: new Date(e.at).toISOString(), minerId: e.minerId, host: at.host, port: at.port, event: e.kind };
          const rest =
            e.kind === 'status'
              ? { status: e.status, ...(e.previous ? { previous: e.previous } : {}), ...(e.downMs !== undefined ? { downMs: e.downMs } : {}) }
              : { ...(e.kind === 'lost' && e.previous ? { previous: e.previous } : {}), code: e.error.code, message: e.error.message, suggestion: e.error.suggestion };
          console.log(JSON.stringify({ ...base, ...rest }));
        } else {
          const what =
            e.kind === 'status'
              ? e.status + parenthesized([e.previous ? `was ${e.previous}` : '', e.downMs !== undefined ? `back after ${seconds(e.downMs)}` : ''])
              : e.kind === 'lost'
                ? `LOST    ${e.error.code}: ${printable(e.error.message)}; watching for its return`
                : `STOPPED ${e.error.code}: ${printable(e.error.message)} — ${e.error.suggestion}`;
          console.log(`${new Date(e.at).toISOString()}  ${e.minerId.padEnd(idWidth)}  ${hostPort(at.host, at.port).padEnd(addrWidth)}  ${what}`);
        }
        if (!opts.until || end) return;
        // Done once every miner is there, or is there or stopped (a stopped one never gets there).
        if (statusOf(e) === opts.until) there.add(e.minerId);
        else there.delete(e.minerId);
        if (e.kind === 'stopped') stopped.add(e.minerId);
        if (there.size + stopped.size === selected.length) {
          end = stopped.size ? 'out of reach' : 'reached';
          finished.abort();
        }
      };
      process.stderr.write(
        `bos-fleet: watching ${selected.length} miner${selected.length === 1 ? '' : 's'}` +
          (opts.until ? ` until every one is ${opts.until}${timeoutMs ? ` (timeout ${durationText(timeoutMs)})` : ''}` : '') +
          ' — Ctrl-C to stop\n',
      );
      const timer = timeoutMs
        ? setTimeout(() => {
            end ??= 'timeout';
            finished.abort();
          }, timeoutMs)
        : undefined;
      try {
        await watchStatuses(core, targets, { signal: AbortSignal.any([stop.signal, finished.signal]), onEvent: print, ...(verify ? { verify } : {}) });
      } finally {
        if (timer) clearTimeout(timer);
        stop.dispose();
        core.close();
      }
      const result = end ?? (stop.signal.aborted ? 'interrupted' : 'none left');
      // Not there: without --until, only when every miner stopped (none is left to watch).
      const notThere = selected.filter((t) => (opts.until ? statusOf(latest.get(t.minerId)) !== opts.until : result === 'none left'));
      if (opts.json) {
        console.log(JSON.stringify({ at: new Date().toISOString(), event: 'end', result, ...(opts.until ? { until: opts.until } : {}), watched: selected.length, notThere: notThere.map((t) => t.minerId) }));
      }
      if (result === 'reached') {
        process.stderr.write(`bos-fleet: ${selected.length === 1 ? 'the watched miner is' : `all ${selected.length} watched miners are`} ${opts.until} (after ${seconds(Date.now() - started)})\n`);
        return;
      }
      if (result === 'interrupted') {
        // Ctrl-C is how a plain watch ends; one waiting for a status was cut short.
        if (opts.until) process.exitCode = 130;
        return;
      }
      const shown = notThere.slice(0, LISTED).map((t) => `${t.minerId} ${stateText(latest.get(t.minerId))}`);
      const states = shown.join(', ') + (notThere.length > LISTED ? `, and ${notThere.length - LISTED} more` : '');
      const why =
        result === 'timeout'
          ? `timeout after ${durationText(timeoutMs!)}: ${notThere.length} of ${selected.length} watched miners not ${opts.until}`
          : opts.until
            ? `${notThere.length} of ${selected.length} watched miners cannot become ${opts.until}: stopped on an error retrying cannot fix`
            : 'no miner left to watch: each stopped on an error retrying cannot fix';
      process.stderr.write(`bos-fleet: ${why}: ${states}\n`);
      process.exitCode = 2;
    });
}

const parenthesized = (parts: string[]): string => (parts.some(Boolean) ? ` (${parts.filter(Boolean).join('; ')})` : '');
const seconds = (ms: number): string => `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;
const statusOf = (e: WatchEvent | undefined): string | undefined => (e?.kind === 'status' ? e.status : undefined);
const stateText = (e: WatchEvent | undefined): string => (!e ? '(no status yet)' : e.kind === 'status' ? e.status : `${e.kind === 'lost' ? 'LOST' : 'STOPPED'} (${e.error.code})`);

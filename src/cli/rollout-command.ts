// `bos-fleet rollout start|status|pause|resume|abort|rollback`.
import type { Command } from 'commander';
import { loadCredentialProfiles, type CredentialProfiles } from '../fleet/credentials.js';
import { DEFAULT_PREFIX } from '../fleet/keys.js';
import { assertProfiles, assertTargetProfiles } from '../producer/run-local.js';
import { defaultActor } from '../rollout/audit.js';
import { changeRolloutState, rolloutReport, startRollout, type RolloutPlan, type RolloutReport } from '../rollout/create.js';
import { waitForRollout } from '../rollout/wait.js';
import { settledRollbackPlan, withPoolPasswordRef } from '../rollout/rollback.js';
import { waveOutcomes } from '../rollout/control.js';
import { noRollout, RolloutStore, TERMINAL, waveRunId } from '../rollout/store.js';
import { describeSpec, type MutationSpec } from '../workers/ops/mutation-spec.js';
import { startWorker } from '../workers/worker.js';
import { answeredWithin, CLOSE_STUCK_MS, closeWorker, type CloseResult } from '../workers/close.js';
import { exitNow } from './hang-up.js';
import { listWorkers, workersWarning } from '../workers/registry.js';
import { countsInOrder } from './render.js';
import { interruptible, loadSelected, loadTlsSites, localPoolOptions, selectAndSay, selectionFrom, selectionOptions, whereFlags, type SelectionFlags } from './common.js';
import { connectRedis } from './connect-redis.js';
import { isSelecting, selectionText } from '../producer/selection.js';
import { siteHasTls, type TlsProfile } from '../core/tls.js';
import { positiveInt, prefixOption } from './parse.js';
import { assertPoolRefs, poolPasswordRefOption, warnNoPoolPassword, checkLocalWorker, confirm, CONFIRM_THRESHOLD, gatesFromFlags, operationOf, parseAt, specFromFlags, type GateFlags, type OperationFlags } from './rollout-options.js';
import { dryRun, LOCAL_CONCURRENCY } from './dry-run.js';

interface CommonFlags {
  redis?: string;
  credentials?: string;
  prefix: string;
  json?: boolean;
  actor?: string;
}

interface RunFlags extends CommonFlags, GateFlags {
  tls?: string;
  yes?: boolean;
  allowOverlap?: boolean;
  wait?: boolean;
  localWorker: boolean;
}

function common(cmd: Command): Command {
  return cmd
    .option('--redis <url>', 'Redis URL (default: REDIS_URL, else the embedded redis-server)')
    .option('--credentials <file>', 'credential profiles JSON (miner logins and pool passwordRef targets)')
    .option('--prefix <prefix>', 'Redis key prefix', prefixOption, DEFAULT_PREFIX)
    .option('--actor <name>', 'who is acting, for the audit log (default: the OS user)')
    .option('--json', 'print JSON');
}

function runOptions(cmd: Command): Command {
  return common(cmd)
    .option('--waves <list>', 'cumulative fractions of the inventory per wave', '1%,10%,50%,100%')
    .option('--max-failure-rate <pct>', 'halt when failed/done exceeds this', '5%')
    .option('--min-sample <n>', 'outcomes needed before the failure gate applies', positiveInt('--min-sample'), 10)
    .option('--pause-between <duration>', 'wait between waves (e.g. 30s, 10m)', '0s')
    .option('--max-in-flight-per-site <n>', 'miners changed at once per site', positiveInt('--max-in-flight-per-site'))
    .option('--yes', `do not ask for confirmation (asked above ${CONFIRM_THRESHOLD} miners)`)
    .option('--allow-overlap', 'start even though an unfinished rollout changes the same setting on some of these miners (or reboots them, or this one reboots)')
    .option('--tls <file>', 'TLS per site: JSON {"site or *": {"caFile", "certFile"?, "keyFile"?, "serverName"?}}; those sites are changed over TLS only, by any worker')
    .option('--wait', 'wait until the rollout ends and print its result')
    .option('--no-local-worker', 'with --wait: rely on separate `bos-fleet worker` processes only');
}

/**
 * A rollback goes over TLS where its rollout did; when this command's own worker does it, `--tls`
 * must give the TLS files of those sites (they live on the host, not in Redis).
 */
function assertTlsCovers(tlsSites: string[] | undefined, targets: { site: string }[], tlsBySite: Record<string, TlsProfile> | undefined, what: string): void {
  const mine = Object.keys(tlsBySite ?? {});
  const lacking = [...new Set(targets.filter((t) => siteHasTls(tlsSites ?? [], t.site) && !siteHasTls(mine, t.site)).map((t) => t.site || '-'))];
  if (lacking.length) throw new Error(`${what} went over TLS on site${lacking.length > 1 ? 's' : ''} ${lacking.map((x) => `"${x}"`).join(', ')}: pass --tls FILE with ${lacking.length > 1 ? 'their' : 'its'} TLS files (never changed in plaintext), or --no-local-worker to leave it to workers that have them`);
}

/** How long until `atMs`, roughly: "in 30 days", "in 19 h", "in 5 min", "in 20 s". */
export function untilText(atMs: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((atMs - now) / 1000));
  return s >= 3 * 86_400 ? `in ${Math.round(s / 86_400)} days` : s >= 7200 ? `in ${Math.round(s / 3600)} h` : s >= 120 ? `in ${Math.round(s / 60)} min` : `in ${s} s`;
}

/** `where`: print where each wave's failed miners are listed, with these flags (none: leave it out). */
export function reportText(r: RolloutReport, where?: string): string {
  const lines = [`rollout ${r.rolloutId}  ${r.operation}  ${r.state}${r.startAt ? ` for ${r.startAt} (${untilText(Date.parse(r.startAt))})` : ''}${r.reason ? ` (${r.reason})` : ''}${r.rollbackOf ? `  rollback of ${r.rollbackOf}${r.rollbackOnly ? ` (only ${r.rollbackOnly})` : ''}` : ''}`];
  if (r.retrying) lines.push(`  retrying: ${r.retrying.step}: ${r.retrying.error} (attempt ${r.retrying.attemptsMade} of ${r.retrying.attempts} failed; it is tried again, each time after a wait twice as long)`);
  // Between waves, the first wave not started is the one --pause-between is waiting for.
  const next = r.nextWaveAt === undefined ? undefined : r.waves.find((w) => waveOutcomes(w) === 0)?.index;
  for (const w of r.waves) {
    const n = waveOutcomes(w);
    const when = w.index === r.heldWave ? ' (its time came during the pause: starts on resume)' : w.index === next && r.nextWaveAt ? ` (${Date.parse(r.nextWaveAt) > Date.now() ? `starts ${untilText(Date.parse(r.nextWaveAt))}, at ${r.nextWaveAt}` : 'starting'})` : '';
    const toGo = n >= w.miners ? '' : !TERMINAL.includes(r.state) ? `; ${w.miners - n} to go` : n > 0 ? `; ${w.miners - n} without an outcome yet (a running \`bos-fleet worker\` settles them)` : '';
    const ch = w.changes ?? {};
    const changes = ch['applied'] || ch['unchanged'] ? ` (changed ${ch['applied'] ?? 0}, already set ${ch['unchanged'] ?? 0})` : '';
    const counts = n === 0 ? `not started${when}` : `${countsInOrder(w.counts).join(', ')}${changes}${toGo}`;
    lines.push(`  wave ${w.index}: ${String(w.miners).padStart(6)} ${w.miners === 1 ? 'miner ' : 'miners'}  ${counts}`);
  }
  // Which miners failed, and why, is in each wave's run.
  for (const w of where === undefined ? [] : r.waves) {
    if (Object.keys(w.counts).some((code) => code !== 'OK')) lines.push(`details: bos-fleet results ${waveRunId(r.rolloutId, w.index)}${where} --failed`);
  }
  return lines.join('\n');
}

function jsonReport(r: RolloutReport) {
  return { rolloutId: r.rolloutId, state: r.state, waves: r.waves.map(({ index, miners, counts }) => ({ index, miners, counts })), counts: r.counts };
}

async function launch(plan: RolloutPlan, flags: RunFlags, credentials: CredentialProfiles, tlsBySite: Record<string, TlsProfile> | undefined): Promise<void> {
  const { url, redis } = await connectRedis(flags.redis);
  // Ctrl-C stops this command, not the rollout: it is durable in Redis and any worker carries it on.
  // Taken from before the start: a Ctrl-C during it lets it finish, and the rollout is named.
  const stop = flags.wait ? interruptible(flags.localWorker ? 'stopping: the miners being changed now finish and are verified' : 'stopping the wait') : undefined;
  try {
    const rec = await startRollout(redis, plan, flags.prefix);
    if (!flags.wait || !flags.localWorker) {
      const warning = workersWarning(await listWorkers(redis, flags.prefix), plan.targets, plan.tlsSites ?? [], 'the rollout waits', { mutation: plan.spec });
      if (warning) process.stderr.write(`bos-fleet: WARNING: ${warning}\n`);
    }
    if (!stop) {
      console.log(flags.json ? JSON.stringify({ rolloutId: rec.rolloutId, state: (await rolloutReport(redis, rec.rolloutId, flags.prefix))?.state }) : `rollout ${rec.rolloutId} ${rec.startAtMs > Date.now() ? `scheduled for ${new Date(rec.startAtMs).toISOString()} (${untilText(rec.startAtMs)})` : 'started'} (${rec.waveEnds.length} wave${rec.waveEnds.length === 1 ? '' : 's'}); run \`bos-fleet worker\` to carry it out, \`bos-fleet rollout status ${rec.rolloutId}\` to follow it`);
      return;
    }
    const worker = flags.localWorker && !stop.signal.aborted ? await startWorker({ redisUrl: url, prefix: flags.prefix, threads: 0, credentials, ...localPoolOptions(0, LOCAL_CONCURRENCY, false), ...(tlsBySite ? { tlsBySite } : {}) }) : undefined;
    let report: RolloutReport | undefined;
    let closed: CloseResult | undefined;
    try {
      let last = '';
      report = await waitForRollout(
        redis,
        rec.rolloutId,
        flags.prefix,
        (r) => {
          const line = reportText(r);
          if (!flags.json && line !== last && process.stderr.isTTY) process.stderr.write(`\x1b[2K${line.split('\n').join(' | ')}\r`);
          last = line;
        },
        stop.signal,
      );
      if (!flags.json && process.stderr.isTTY) process.stderr.write('\n');
    } finally {
      // With Redis down, the miners being changed wait for it to record their outcomes; with none, the command stops here.
      if (worker) closed = await closeWorker(worker, (busy) => process.stderr.write(`bos-fleet: Redis is unreachable or not answering: the ${busy} job${busy === 1 ? '' : 's'} in flight (miners being changed, the rollout's own steps) wait for it to record their results (Ctrl-C again to quit now: a worker takes them up once their lock expires)\n`));
    }
    // What the local worker finished while closing counts too.
    let redisDown = stop.signal.aborted && (closed === 'redis-down' || redis.status !== 'ready');
    if (stop.signal.aborted && !redisDown) {
      const read = await answeredWithin(rolloutReport(redis, rec.rolloutId, flags.prefix), CLOSE_STUCK_MS);
      if (read) report = read.value ?? report;
      else redisDown = true; // gone as the Ctrl-C came, or not answering: nothing of this command is in flight
    }
    if (!report || redisDown) {
      const where = whereFlags(flags);
      process.stderr.write(
        `bos-fleet: interrupted while Redis is unreachable or not answering: rollout ${rec.rolloutId} stays in Redis as it is, and goes on as soon as Redis is back and a \`bos-fleet worker\` runs on it. ` +
          `Then \`bos-fleet rollout status ${rec.rolloutId}${where}\` shows it; to hold it: bos-fleet rollout pause ${rec.rolloutId}${where}; to stop it: bos-fleet rollout abort ${rec.rolloutId}${where}\n`,
      );
      exitNow(130); // its Redis connections would wait for Redis without end
      return;
    }
    console.log(flags.json ? JSON.stringify(jsonReport(report)) : reportText(report, whereFlags(flags)));
    if (stop.signal.aborted && !TERMINAL.includes(report.state)) {
      const where = whereFlags(flags);
      process.stderr.write(
        `bos-fleet: interrupted: rollout ${rec.rolloutId} is still ${report.state} in Redis and goes on, wave by wave with its gates, as soon as a \`bos-fleet worker\` runs on this Redis. ` +
          `To hold it: bos-fleet rollout pause ${rec.rolloutId}${where}; to stop it: bos-fleet rollout abort ${rec.rolloutId}${where}\n`,
      );
      process.exitCode = 130;
    } else if (report.state !== 'completed') process.exitCode = 2;
    // A local worker whose queue connections never closed after a Redis outage would keep the process up.
    if (closed && closed !== 'closed') exitNow(Number(process.exitCode ?? 0));
  } finally {
    stop?.dispose();
    redis.disconnect();
  }
}

export function registerRollout(program: Command): void {
  const ro = program.command('rollout').description('staged config changes: waves that halt themselves, verification, rollback');

  selectionOptions(runOptions(ro.command('start').description('change a setting on every miner of an inventory (or of --site, --tag, --miner), in waves')))
    .requiredOption('--inventory <file>', 'inventory CSV or JSON')
    .option('--power-target <watts>', 'set this power target (W)')
    .option('--hashrate-target <ths>', 'set this hashrate target (TH/s)')
    .option('--pools <file>', 'set these pool groups (JSON; url/user may use {minerId}, {host}, {site}; passwords as passwordRef)')
    .option('--action <action>', 'pause | resume | reboot | locate-on | locate-off')
    .option('--at <iso-time>', 'start at this time instead of now')
    .option('--dry-run', 'read every miner and print what would change; change nothing')
    .action(async (flags: RunFlags & OperationFlags & SelectionFlags & { at?: string; dryRun?: boolean }) => {
      const inventory = loadSelected(flags);
      const spec = specFromFlags(flags);
      const gates = gatesFromFlags(flags);
      const startAtMs = parseAt(flags.at);
      const credentials = loadCredentialProfiles(flags.credentials);
      const tlsBySite = loadTlsSites(flags.tls);
      const checks = () => (assertProfiles(inventory, credentials, flags.credentials), assertPoolRefs(spec, credentials, `--pools ${flags.pools}`, flags.credentials));
      if (flags.dryRun) checks();
      else if (flags.wait && flags.localWorker) checkLocalWorker(checks);
      if (flags.dryRun) return dryRun(flags, inventory, spec, credentials, tlsBySite);
      await confirm(inventory.targets.length, describeSpec(spec), flags.yes);
      const plan: RolloutPlan = { operation: operationOf(spec), spec, targets: inventory.targets, inventoryDigest: inventory.digest, ...gates, actor: flags.actor ?? defaultActor(), ...(startAtMs ? { startAtMs } : {}), ...(flags.allowOverlap ? { allowOverlap: true } : {}), ...(tlsBySite ? { tlsSites: Object.keys(tlsBySite) } : {}) };
      await launch(plan, flags, credentials, tlsBySite);
    });

  common(ro.command('status [rolloutId]').description('a rollout: each wave with its miners and counts by code (no id: recent rollouts)')).action(async (id: string | undefined, flags: CommonFlags) => {
    const { redis } = await connectRedis(flags.redis);
    try {
      const ids = id ? [id] : await new RolloutStore(redis, flags.prefix).list(20);
      const reports = [];
      for (const rid of ids) {
        const r = await rolloutReport(redis, rid, flags.prefix);
        if (!r) throw noRollout(rid);
        reports.push(r);
      }
      if (flags.json) console.log(JSON.stringify(id ? jsonReport(reports[0] as RolloutReport) : reports.map(jsonReport)));
      else console.log(reports.map((r) => reportText(r, whereFlags(flags))).join('\n\n') || 'no rollouts yet');
      // An unfinished rollout that nothing carries on says so (on stderr: the JSON stays as it is).
      const waiting = reports.filter((r) => !TERMINAL.includes(r.state)).map((r) => r.rolloutId);
      const warning = waiting.length ? workersWarning(await listWorkers(redis, flags.prefix), [], [], waiting.length === 1 ? `rollout ${waiting[0]} waits` : `${waiting.length} unfinished rollouts wait`) : undefined;
      if (warning) process.stderr.write(`bos-fleet: WARNING: ${warning}\n`);
    } finally {
      redis.disconnect();
    }
  });

  for (const action of ['pause', 'resume', 'abort'] as const) {
    common(ro.command(`${action} <rolloutId>`).description(action === 'abort' ? 'stop scheduling new miners (those not yet changed get CANCELLED)' : `${action} a rollout`)).action(async (id: string, flags: CommonFlags) => {
      const { redis } = await connectRedis(flags.redis);
      try {
        const state = await changeRolloutState(redis, id, action, flags.actor ?? defaultActor(), flags.prefix);
        console.log(flags.json ? JSON.stringify({ rolloutId: id, state }) : `rollout ${id}: ${state}`);
      } finally {
        redis.disconnect();
      }
    });
  }

  poolPasswordRefOption(selectionOptions(runOptions(ro.command('rollback <rolloutId>').description("restore every miner the rollout changed (or those of them --site, --tag, --miner pick) to its recorded `before`, as a rollout of its own"))))
    .action(async (id: string, flags: RunFlags & Omit<SelectionFlags, 'inventory'> & { poolPasswordRef?: string }) => {
      const { redis } = await connectRedis(flags.redis);
      const credentials = loadCredentialProfiles(flags.credentials);
      const tlsBySite = loadTlsSites(flags.tls);
      let plan: RolloutPlan;
      try {
        // Just after an abort, miners being changed finish first: what they end up with is what is restored.
        const rb = await settledRollbackPlan(redis, id, flags.prefix, (n) => process.stderr.write(`bos-fleet: rollout ${id} still has ${n} miner${n === 1 ? '' : 's'} being changed: waiting for ${n === 1 ? 'its outcome' : 'their outcomes'} before rolling back\n`));
        // Part of it (a rack that overheats): the rest stays as the rollout left it, and a restore schedule still restores it.
        const only = selectionFrom(flags);
        const picked = rb.targets.length > 0 ? selectAndSay({ file: id, targets: rb.targets, digest: rb.rec.inventoryDigest }, only, `rollout ${id} changed`, `the ${rb.targets.length} miners rollout ${id} changed`) : undefined;
        const targets = picked?.targets ?? rb.targets;
        const chosen = picked && new Set(picked.targets.map((t) => t.minerId));
        const uncertain = chosen ? rb.uncertain.filter((m) => chosen.has(m)) : rb.uncertain;
        if (targets.length === 0) {
          throw new Error(
            rb.skipped.length
              ? `rollout ${id} changed ${rb.skipped.length} miner${rb.skipped.length === 1 ? '' : 's'}, but none has a recorded before value to restore (${rb.skipped.slice(0, 5).join(', ')}${rb.skipped.length > 5 ? ', …' : ''}): nothing to roll back`
              : `rollout ${id} changed no miner: nothing to roll back`,
          );
        }
        const pools = rb.rec.spec.kind === 'pools';
        if (flags.poolPasswordRef !== undefined && !pools) throw new Error(`--pool-password-ref goes with the rollback of a pools rollout; ${id} is a ${rb.rec.operation} rollout`);
        const specByMiner = flags.poolPasswordRef !== undefined ? withPoolPasswordRef(rb.specByMiner, flags.poolPasswordRef) : rb.specByMiner;
        const first = specByMiner[targets[0]?.minerId ?? ''] as MutationSpec;
        if (flags.wait && flags.localWorker) {
          checkLocalWorker(() => {
            assertTargetProfiles(targets, `rollout ${id}'s miners`, credentials, flags.credentials);
            assertPoolRefs(first, credentials, '--pool-password-ref', flags.credentials);
            assertTlsCovers(rb.rec.tlsSites, targets, tlsBySite, `rollout ${id}`);
          });
        }
        if (pools && flags.poolPasswordRef === undefined) {
          warnNoPoolPassword('this rollback');
        }
        await confirm(targets.length, `roll back ${describeSpec(rb.rec.spec)}`, flags.yes);
        plan = { operation: operationOf(first), spec: first, specByMiner, targets, inventoryDigest: picked?.digest ?? rb.rec.inventoryDigest, ...gatesFromFlags(flags), actor: flags.actor ?? defaultActor(), rollbackOf: id, ...(isSelecting(only) ? { rollbackOnly: selectionText(only) } : {}), ...(flags.allowOverlap ? { allowOverlap: true } : {}), ...(rb.rec.tlsSites ? { tlsSites: rb.rec.tlsSites } : {}) };
        if (uncertain.length) process.stderr.write(`bos-fleet: ${uncertain.length} miners whose change failed after it may have been written are restored too (a miner it never reached reads back unchanged): ${uncertain.slice(0, 10).join(', ')}\n`);
        if (rb.skipped.length) process.stderr.write(`bos-fleet: ${rb.skipped.length} changed miners have no restorable before value and are left as they are: ${rb.skipped.slice(0, 10).join(', ')}\n`);
      } finally {
        redis.disconnect();
      }
      await launch(plan, flags, credentials, tlsBySite);
    });
}

// `bos-fleet schedule add poll|rollout`, `schedule list`, `schedule remove ID`.
import type { Command } from 'commander';
import { DEFAULT_PREFIX } from '../fleet/keys.js';
import { defaultActor } from '../rollout/audit.js';
import { addSchedule, checkCron, firstTickAt, getSchedule, listSchedules, newScheduleId, scheduleDefs, removeSchedule, type ScheduleDef } from '../rollout/schedules.js';
import { durationText, parseDurationMs } from '../fleet/ids-and-durations.js';
import { describeSpec } from '../workers/ops/mutation-spec.js';
import { listWorkers, workersWarning } from '../workers/registry.js';
import { loadSelected, loadTlsSites, retentionFrom, retentionOptions, selectionOptions, type RetentionFlags, type SelectionFlags } from './common.js';
import { connectRedis } from './connect-redis.js';
import { positiveInt, timeoutMsOption, prefixOption } from './parse.js';
import { confirm, CONFIRM_THRESHOLD, gatesFromFlags, operationOf, poolPasswordRefOption, warnNoPoolPassword, specFromFlags, type GateFlags, type OperationFlags } from './rollout-options.js';
import { columns } from './render.js';

interface AddFlags extends RetentionFlags, SelectionFlags {
  every?: string;
  cron?: string;
  tz?: string;
  id?: string;
  redis?: string;
  prefix: string;
  actor?: string;
  timeoutMs?: number;
  tls?: string;
  json?: boolean;
}

/** The flags of every `schedule add` but its target set's. */
type TimingFlags = Omit<AddFlags, keyof SelectionFlags>;

function addOptions(cmd: Command, withInventory = true): Command {
  if (withInventory) {
    selectionOptions(cmd.requiredOption('--inventory <file>', 'inventory CSV or JSON (read now; the schedule keeps this target set)')).option(
      '--tls <file>',
      'TLS per site, as for poll: those sites are reached over TLS only, by workers that have their TLS files',
    );
  }
  return cmd
    .option('--every <duration>', 'fire every interval (e.g. 60s, 15m)')
    .option('--cron <pattern>', 'fire on a cron pattern (e.g. "0 14 * * *")')
    .option('--tz <zone>', 'time zone of the cron pattern (e.g. Europe/Prague; default UTC, whatever the hosts\' zones)')
    .option('--id <id>', 'schedule id (default: generated)')
    .option('--timeout-ms <n>', 'deadline of each call attempt (100 to 600000)', timeoutMsOption)
    .option('--redis <url>', 'Redis URL (default: REDIS_URL, else the embedded redis-server)')
    .option('--prefix <prefix>', 'Redis key prefix', prefixOption, DEFAULT_PREFIX)
    .option('--actor <name>', 'who is acting, for the audit log')
    .option('--json', 'print JSON');
}

/** The gates of a scheduled rollout's (or rollback's) waves, as `rollout start` has them. */
function gateOptions(cmd: Command): Command {
  return cmd
    .option('--waves <list>', 'cumulative fractions per wave', '1%,10%,50%,100%')
    .option('--max-failure-rate <pct>', 'halt above this failure rate', '5%')
    .option('--min-sample <n>', 'outcomes before the gate applies', positiveInt('--min-sample'), 10)
    .option('--pause-between <duration>', 'wait between waves', '0s')
    .option('--max-in-flight-per-site <n>', 'miners changed at once per site', positiveInt('--max-in-flight-per-site'));
}

/** When and who of a schedule: its --every or --cron (with --tz), id, deadline and actor. */
function timingDef(flags: TimingFlags, kind: ScheduleDef['kind']) {
  if (Boolean(flags.every) === Boolean(flags.cron)) throw new Error('give exactly one of --every and --cron');
  if (flags.tz && !flags.cron) throw new Error('--tz goes with --cron');
  if (flags.id !== undefined && !/^[A-Za-z0-9_-]{1,64}$/.test(flags.id)) throw new Error(`--id must be 1–64 letters, digits, "_" or "-", got "${flags.id}"`);
  const everyMs = flags.every ? parseDurationMs(flags.every, '--every', { unitRequired: true }) : undefined;
  if (everyMs !== undefined && everyMs < 1_000) throw new Error(`--every must be at least 1s, got "${flags.every}"`);
  // A cron pattern without a zone would be read in the zone of whichever worker computes the next
  // tick: workers on hosts set to different zones would fire it at different hours.
  const tz = flags.cron ? (flags.tz ?? 'UTC') : undefined;
  if (flags.cron) checkCron(flags.cron, tz);
  return {
    scheduleId: flags.id ?? newScheduleId(),
    kind,
    ...(everyMs ? { everyMs } : {}),
    ...(flags.cron ? { cron: flags.cron } : {}),
    ...(tz ? { tz } : {}),
    ...(flags.timeoutMs ? { timeoutMs: flags.timeoutMs } : {}),
    actor: flags.actor ?? defaultActor(),
    createdAt: new Date().toISOString(),
  };
}

function baseDef(flags: AddFlags, kind: ScheduleDef['kind']): ScheduleDef {
  const timing = timingDef(flags, kind);
  const inventory = loadSelected(flags);
  const tlsBySite = loadTlsSites(flags.tls);
  return { ...timing, targets: inventory.targets, inventoryFile: inventory.file, inventoryDigest: inventory.digest, ...(tlsBySite ? { tlsSites: Object.keys(tlsBySite) } : {}) };
}

/** When a schedule fires: `every 24h`, `cron "0 14 * * *" (UTC)`. */
const whenText = (def: ScheduleDef): string => (def.everyMs ? `every ${durationText(def.everyMs)}` : `cron "${def.cron}"${def.tz ? ` (${def.tz})` : ''}`);

/** A first tick, said: `at once (…Z)` for one due now (an --every schedule's), else its time. */
function firstTickText(at: number): string {
  const iso = new Date(at).toISOString();
  return at - Date.now() < 2_000 ? `at once (${iso})` : `at ${iso}`;
}

/**
 * A schedule that changes more than CONFIRM_THRESHOLD miners asks first, as `rollout start` does, saying
 * when it fires — an --every schedule's first tick is at once: a scheduled reboot of the farm added
 * by mistake would start rebooting it before anyone could look.
 */
async function confirmSchedule(def: ScheduleDef, what: string, yes: boolean | undefined): Promise<void> {
  await confirm(def.targets.length, what, yes, `at every tick, ${whenText(def)}, the first ${firstTickText(firstTickAt(def))}`);
}

async function save(def: ScheduleDef, flags: TimingFlags): Promise<void> {
  const { redis } = await connectRedis(flags.redis);
  try {
    const { replaced, nextAt } = await addSchedule(redis, def, flags.prefix);
    const first = `first tick ${firstTickText(nextAt ? Date.parse(nextAt) : firstTickAt(def))}`;
    console.log(
      flags.json
        ? JSON.stringify({ scheduleId: def.scheduleId, replaced, ...(nextAt ? { nextAt } : {}) })
        : `schedule ${def.scheduleId}${replaced ? ' (replaces the schedule of that id)' : ''}: ` +
          (def.rollback
            ? `rollback of schedule ${def.rollback.of}'s latest rollout (its miners that rollout changed), ${whenText(def)}, ${first}; carried out by \`bos-fleet worker\` processes`
            : `${def.kind} of ${def.targets.length} miners, ${whenText(def)}, ${first}; carried out by \`bos-fleet worker\` processes. It keeps these miners: after editing ${def.inventoryFile}, add it again with --id ${def.scheduleId}`),
    );
    // Its ticks fire only in workers, and its miners need their profiles and TLS files there.
    const warning = workersWarning(await listWorkers(redis, flags.prefix), def.targets, def.tlsSites ?? [], 'its ticks wait', def.rollout ? { mutation: def.rollout.spec } : {});
    if (warning) process.stderr.write(`bos-fleet: WARNING: ${warning}\n`);
  } finally {
    redis.disconnect();
  }
}

export function registerSchedule(program: Command): void {
  const sc = program.command('schedule').description('recurring polls and rollouts (BullMQ job schedulers: each tick fires once, however many workers run)');
  const add = sc.command('add').description('add a schedule');

  retentionOptions(addOptions(add.command('poll').description('poll an inventory on a schedule')), 'of this schedule').action(async (flags: AddFlags) => {
    const retention = retentionFrom(flags);
    return save({ ...baseDef(flags, 'poll'), ...(retention ? { retention } : {}) }, flags);
  });

  const rollout = retentionOptions(addOptions(add.command('rollout').description('start a rollout on a schedule (e.g. curtailment: lower at 14:00; `schedule add rollback` restores at 18:00)')), 'of this schedule', 'rollouts (their runs and outcomes)')
    .option('--power-target <watts>', 'set this power target (W)')
    .option('--hashrate-target <ths>', 'set this hashrate target (TH/s)')
    .option('--pools <file>', 'set these pool groups (JSON)')
    .option('--action <action>', 'pause | resume | reboot | locate-on | locate-off')
    .option('--yes', `do not ask for confirmation (asked above ${CONFIRM_THRESHOLD} miners)`);
  gateOptions(rollout).action(async (flags: AddFlags & OperationFlags & GateFlags & { yes?: boolean }) => {
    const spec = specFromFlags(flags);
    const retention = retentionFrom(flags);
    const def: ScheduleDef = { ...baseDef(flags, 'rollout'), ...(retention ? { retention } : {}), rollout: { operation: operationOf(spec), spec, ...gatesFromFlags(flags) } };
    await confirmSchedule(def, describeSpec(spec), flags.yes);
    await save(def, flags);
  });

  const rollback = retentionOptions(
    addOptions(add.command('rollback').description("roll back another schedule's latest rollout on a schedule: each miner back to its own value from before it (the end of a curtailment window)"), false),
    'of this schedule',
    'rollbacks (their runs and outcomes)',
  )
    .requiredOption('--of <scheduleId>', 'the rollout schedule whose latest rollout each tick rolls back (once: a tick finding it rolled back already skips)')
    .option('--yes', `do not ask for confirmation (asked above ${CONFIRM_THRESHOLD} miners)`);
  gateOptions(poolPasswordRefOption(rollback)).action(async (flags: TimingFlags & GateFlags & { of: string; poolPasswordRef?: string; yes?: boolean }) => {
    const gates = gatesFromFlags(flags);
    const retention = retentionFrom(flags);
    const timing = timingDef(flags, 'rollback');
    if (flags.of === timing.scheduleId) throw new Error(`--of "${flags.of}" is this schedule's own --id: give the id of the rollout schedule to roll back`);
    const { redis } = await connectRedis(flags.redis);
    const source = await getSchedule(redis, flags.of, flags.prefix).finally(() => redis.disconnect());
    if (!source) throw new Error(`--of "${flags.of}": no such schedule (see bos-fleet schedule list)`);
    if (source.kind !== 'rollout' || !source.rollout) throw new Error(`--of "${flags.of}" is a ${source.kind} schedule: only a rollout schedule's changes can be rolled back`);
    if (source.rollout.spec.kind === 'reboot') throw new Error(`--of "${flags.of}" reboots its miners: a reboot cannot be rolled back`);
    const pools = source.rollout.spec.kind === 'pools';
    if (flags.poolPasswordRef !== undefined && !pools) throw new Error(`--pool-password-ref goes with the rollback of a pools schedule; ${flags.of} changes ${describeSpec(source.rollout.spec)}`);
    if (pools && flags.poolPasswordRef === undefined) {
      warnNoPoolPassword('this schedule');
    }
    const def: ScheduleDef = {
      ...timing,
      // For show and for the workers check: the rollback itself takes its miners from the rollout it undoes.
      targets: source.targets,
      inventoryFile: source.inventoryFile,
      inventoryDigest: source.inventoryDigest,
      ...(source.tlsSites ? { tlsSites: source.tlsSites } : {}),
      ...(retention ? { retention } : {}),
      rollback: { of: flags.of, ...(flags.poolPasswordRef !== undefined ? { poolPasswordRef: flags.poolPasswordRef } : {}), ...gates },
    };
    await confirmSchedule(def, `roll back schedule ${flags.of}'s latest rollout: ${describeSpec(source.rollout.spec)}`, flags.yes);
    await save(def, flags);
  });

  sc.command('list')
    .description('list schedules with their next tick, the last run or rollout they started, and ticks skipped or failed')
    .option('--redis <url>', 'Redis URL')
    .option('--prefix <prefix>', 'Redis key prefix', prefixOption, DEFAULT_PREFIX)
    .option('--json', 'print JSON')
    .action(async (flags: { redis?: string; prefix: string; json?: boolean }) => {
      const { redis } = await connectRedis(flags.redis);
      try {
        const list = await listSchedules(redis, flags.prefix);
        if (flags.json) return console.log(JSON.stringify(list.map(({ targets, ...d }) => ({ ...d, miners: targets.length }))));
        if (list.length === 0) return console.log('no schedules');
        const table = list.map((d) => {
          const when = d.everyMs ? `every ${durationText(d.everyMs)}` : `cron "${d.cron}"${d.tz ? ` ${d.tz}` : ''}`;
          const what = d.kind === 'poll' ? 'poll' : d.rollback ? `rollback of ${d.rollback.of}'s latest rollout` : `rollout ${d.rollout ? describeSpec(d.rollout.spec) : ''}`;
          const skipped = d.skipped ? `  ${d.skipped} tick${d.skipped === 1 ? '' : 's'} skipped (last ${d.skippedAt}${d.skippedReason ? `: ${d.skippedReason}` : ''})` : '';
          const failed = d.failed ? `  ${d.failed} tick${d.failed === 1 ? '' : 's'} FAILED (last ${d.failedAt}: ${d.failedReason})` : '';
          const last = d.last ? `  last ${d.last}${d.lastState ? ` (${d.lastState})` : ''}` : '';
          return [d.scheduleId, what, `${d.targets.length} miner${d.targets.length === 1 ? '' : 's'}`, when, `next ${d.nextAt ?? '?'}${last}${skipped}${failed}`];
        });
        for (const line of columns(table, [2])) console.log(line);
      } finally {
        redis.disconnect();
      }
    });

  sc.command('remove <scheduleId>')
    .description('remove a schedule (ticks already started run to their end)')
    .option('--redis <url>', 'Redis URL')
    .option('--prefix <prefix>', 'Redis key prefix', prefixOption, DEFAULT_PREFIX)
    .option('--actor <name>', 'who is acting, for the audit log')
    .action(async (id: string, flags: { redis?: string; prefix: string; actor?: string }) => {
      const { redis } = await connectRedis(flags.redis);
      try {
        await removeSchedule(redis, id, flags.actor ?? defaultActor(), flags.prefix);
        console.log(`schedule ${id} removed`);
        // A restore left without its lowering fails at every tick, loudly: say so now.
        const dependents = (await scheduleDefs(redis, flags.prefix)).filter((d) => d.rollback?.of === id).map((d) => d.scheduleId);
        if (dependents.length) process.stderr.write(`bos-fleet: WARNING: schedule${dependents.length === 1 ? '' : 's'} ${dependents.join(', ')} roll${dependents.length === 1 ? 's' : ''} back this one's rollouts: ${dependents.length === 1 ? 'its' : 'their'} ticks now fail (bos-fleet schedule remove ${dependents[0]})\n`);
      } finally {
        redis.disconnect();
      }
    });
}

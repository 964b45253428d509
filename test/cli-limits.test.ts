// Flag bounds and the open-files check: a worker configured past what its process can hold is told so
// at start-up instead of failing with EMFILE mid-run.
import { describe, expect, it } from 'vitest';
import { fitDescriptors, openFilesLimit } from '../src/cli/common.js';
import { shownRedisUrl } from '../src/redis/resolve.js';
import { gatesFromFlags, parseAt, specFromFlags } from '../src/cli/rollout-options.js';
import { untilText } from '../src/cli/rollout-command.js';
import { durationText, parseDurationMs } from '../src/fleet/ids-and-durations.js';
import { parsePercent, parseWaves } from '../src/rollout/waves.js';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { inventoryCsv } from '../src/sim/plan.js';
import { jobDataSchema } from '../src/fleet/job.js';
import { CLI, exited, runCli, writeFleetFiles, type FleetFiles } from './helpers/cli.js';
import { startTestFleet } from './helpers/fleet.js';
import { redisUrl, uniquePrefix } from './helpers/redis.js';

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max processes             95442                95442                processes
Max open files            20000                20000                files
Max locked memory         8388608              8388608              bytes
`;

describe('open files', () => {
  it('reads the soft limit from /proc/self/limits text (none when unlimited or unreadable)', () => {
    expect(openFilesLimit(LIMITS)).toBe(20_000);
    expect(openFilesLimit(LIMITS.replace('Max open files            20000', 'Max open files            unlimited'))).toBeUndefined();
    expect(openFilesLimit('')).toBeUndefined();
    if (process.platform === 'linux') expect(openFilesLimit()).toBeGreaterThan(0);
  });

  it('past the limit, uses the largest --max-connections that fits and says so; when the miners in flight alone do not fit, runs the most that do', () => {
    expect(fitDescriptors({ threads: 0, maxConnections: 16_384, concurrency: 200 }, 20_000)).toEqual({ maxConnections: 16_384, concurrency: 200 });
    // 2 × 9,860 + 8 consumers × 2 + 64 + 200 sockets of connections being closed = 20,000.
    expect(fitDescriptors({ threads: 2, maxConnections: 16_384, concurrency: 200 }, 20_000)).toEqual({
      maxConnections: 9_860,
      concurrency: 200,
      warning:
        "up to 33048 open files may be needed (2 thread(s) × --max-connections 16384 miner channels; 2 Redis connections per BullMQ consumer × 8; 200 for connections being closed), above this process's limit of 20000 (ulimit -n): using --max-connections 9860 instead (an idle channel is closed sooner, and reopened when its miner is next called); raise the limit to keep more open",
    });
    expect(fitDescriptors({ threads: 2, maxConnections: 16_384, concurrency: 200 }, 65_536)).toEqual({ maxConnections: 16_384, concurrency: 200 });
    // One pool: all of what is left; its miners in flight always fit in it.
    expect(fitDescriptors({ threads: 0, maxConnections: 4_096, concurrency: 200 }, 600)).toMatchObject({ maxConnections: 320, concurrency: 200 });
    // Three pools whose even share is below the miners in flight: the first holds those, the others share the rest.
    expect(fitDescriptors({ threads: 3, maxConnections: 4_096, concurrency: 1_000, consumers: 8 }, 3_000)).toMatchObject({ maxConnections: 460, concurrency: 1_000 });
    // Even the miners in flight do not fit: the most that do, each with a connection (4,776 × 2 + 192 consumers × 2 + 64 = 10,000).
    expect(fitDescriptors({ threads: 0, maxConnections: 100, concurrency: 10_000 }, 10_000)).toEqual({
      maxConnections: 100,
      concurrency: 4_776,
      warning:
        "up to 20864 open files may be needed (10000 miner channels: a pool keeps the channel of each of --concurrency 10000 miners in flight; 2 Redis connections per BullMQ consumer × 400; 10000 for connections being closed), above this process's limit of 10000 (ulimit -n): using --concurrency 4776 instead, so that every miner in flight has a connection; raise the limit to run more at once",
    });
    // Several threads: each still keeps its share of the miners in flight between their calls.
    expect(fitDescriptors({ threads: 4, maxConnections: 4_096, concurrency: 2_000 }, 1_024)).toMatchObject({ maxConnections: 85, concurrency: 338 });
    // A command with no --concurrency (rollout --wait's worker, a dry run) says what it runs instead.
    expect(fitDescriptors({ threads: 0, maxConnections: 4_096, concurrency: 100, concurrencyFlag: false }, 150).warning).toMatch(
      /\(ulimit -n\): running 41 miners at once instead of 100, keeping at most 41 connections, so that every miner in flight has a connection; raise the limit to run more at once$/,
    );
    expect(fitDescriptors({ threads: 0, maxConnections: 4_096, concurrency: 100 }, 40)).toMatchObject({
      maxConnections: 1,
      concurrency: 1,
      warning: expect.stringMatching(/: not even one miner in flight fits; raise the limit \(running one miner at a time meanwhile\)$/),
    });
  });
});

describe('flag bounds', () => {
  it('refuses a concurrency, thread or consumer count no process can hold, naming the range', async () => {
    const concurrency = await runCli(['worker', '--concurrency', '1000000']);
    expect(concurrency.code).not.toBe(0);
    expect(concurrency.stderr).toContain('--concurrency must be a whole number from 1 to 10000, got "1000000"');
    const threads = await runCli(['poll', '--inventory', 'x.csv', '--threads', '999']);
    expect(threads.stderr).toContain('--threads must be a whole number from 0 to 256, got "999"');
    const consumers = await runCli(['worker', '--consumers', '0']);
    expect(consumers.stderr).toContain('--consumers must be a whole number from 1 to 1000, got "0"');
    // A lock that runs out between its renewals would hand every job to another worker mid-change.
    const lock = await runCli(['worker', '--lock-ms', '50']);
    expect(lock.stderr).toContain('--lock-ms must be a whole number from 1000 to 3600000, got "50"');
    // Digits only: 0x10 and 1e3 are no counts an operator means.
    for (const bad of ['0x10', '1e3', '']) {
      const r = await runCli(['worker', '--concurrency', bad]);
      expect(r.stderr).toContain(`--concurrency must be a whole number from 1 to 10000, got "${bad}"`);
    }
    // Printed back in commands to copy (--prefix '…'): a quote or a space would break them.
    for (const bad of ['', "farm 'a'", 'x'.repeat(65)]) {
      const r = await runCli(['runs', '--prefix', bad]);
      expect(r.stderr).toContain(`--prefix must be 1 to 64 letters, digits or {}_.:- characters (default "{bosfleet}"), got "${bad}"`);
    }
    // A Node interval past 24.8 days fires every millisecond: the log would get a report per ms.
    const report = await runCli(['worker', '--report-every', '30d']);
    expect(report.code).toBe(1);
    expect(report.stderr).toContain('--report-every must be at most 1d (0 = only at exit), got "30d"');
  });

  it('refuses a per-call deadline that would blame every miner (5 ms: a typo for seconds) or hold a slot for days (Node\'s timers overflow past 24.8 days and fire at once)', async () => {
    for (const bad of ['5', '99999999999']) {
      const poll = await runCli(['poll', '--inventory', 'x.csv', '--timeout-ms', bad]);
      expect(poll.code).not.toBe(0);
      expect(poll.stderr).toContain(`--timeout-ms must be a whole number from 100 to 600000, got "${bad}"`);
      const schedule = await runCli(['schedule', 'add', 'poll', '--inventory', 'x.csv', '--every', '60s', '--timeout-ms', bad]);
      expect(schedule.stderr).toContain(`--timeout-ms must be a whole number from 100 to 600000, got "${bad}"`);
    }
    // A job that carries one anyway (another producer, an old version) is refused by the worker, naming the field.
    const job = { runId: 'r', operation: 'poll', target: { minerId: 'm', host: '10.0.0.1', port: 50051, site: '', tags: [], credentials: 'default' }, params: {} };
    expect(jobDataSchema.safeParse({ ...job, timeoutMs: 2_000 }).success).toBe(true);
    expect(jobDataSchema.safeParse({ ...job, timeoutMs: 3_000_000_000 }).error?.issues[0]?.path).toEqual(['timeoutMs']);
  });
});

describe('a value with spaces given unquoted', () => {
  it('a --cron pattern split by the shell is refused saying to quote it, and nothing is scheduled', async () => {
    const files = writeFleetFiles(inventoryCsv([{ id: 'm1', host: '127.37.9.1', port: 50051 }]));
    const prefix = uniquePrefix('unquoted');
    try {
      // What `--cron 0 14 * * *` gives in a directory with no files (with files, each * becomes their names).
      const r = await runCli(['schedule', 'add', 'poll', '--inventory', files.inventory, '--redis', redisUrl(), '--prefix', prefix, '--cron', '0', '14', '*', '*', '*']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`error: too many arguments for 'poll'. Expected 0 arguments but got 4. — a --cron pattern is one argument, in quotes: --cron "0 14 * * *" (unquoted, the shell splits it and turns each * into file names)`);
      expect((await runCli(['schedule', 'list', '--redis', redisUrl(), '--prefix', prefix])).stdout).toBe('no schedules\n');
      const waves = await runCli(['rollout', 'start', '--inventory', files.inventory, '--redis', redisUrl(), '--prefix', prefix, '--power-target', '3000', '--waves', '1%,', '100%']);
      expect(waves.code).toBe(1);
      expect(waves.stderr).toContain(`error: too many arguments for 'start'. Expected 0 arguments but got 1. — a value with spaces must be in quotes`);
    } finally {
      rmSync(files.dir, { recursive: true, force: true });
    }
  });
});

describe('--redis / REDIS_URL', () => {
  it('a URL that cannot be parsed is named (its password hidden), not reported as a bare "Invalid URL"', async () => {
    const badPort = await runCli(['runs', '--redis', 'redis://:s3cret@127.0.0.1:99999']);
    expect(badPort.code).not.toBe(0);
    expect(badPort.stderr).toContain('--redis is not a valid URL: "redis://:***@127.0.0.1:99999"');
    expect(badPort.stderr).not.toContain('s3cret');
    const scheme = await runCli(['runs'], { REDIS_URL: 'http://127.0.0.1:6379' });
    expect(scheme.stderr).toContain('REDIS_URL must look like redis://host:6379, got "http://127.0.0.1:6379"\n');
    // host:port alone, as redis-cli takes it: the URL meant is said whole (its password hidden).
    const bare = await runCli(['runs', '--redis', ':s3cret@127.0.0.1:6379']);
    expect(bare.code).toBe(1);
    expect(bare.stderr).toContain('--redis must look like redis://host:6379, got ":***@127.0.0.1:6379" (did you mean "redis://:***@127.0.0.1:6379"?)');
  });

  it('rediss:// to a Redis without TLS says that TLS may be the reason', async () => {
    const r = await runCli(['runs', '--redis', redisUrl().replace(/^redis:/, 'rediss:')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('(check --redis, and that redis-server runs there with TLS: rediss:// connects over TLS, a Redis without it needs redis://)');
  }, 30_000);

  it('a Redis that does not answer is named without its password', async () => {
    const r = await runCli(['runs', '--redis', 'redis://farm:s3cret@127.0.0.1:1/2']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('cannot connect to Redis at redis://farm:***@127.0.0.1:1/2');
    expect(r.stderr).not.toContain('s3cret');
    // A Redis that refuses the login says so, not "check that redis-server runs there".
    const hostPort = new URL(redisUrl()).host;
    const refused = await runCli(['runs'], { REDIS_URL: `redis://farm:s3cret@${hostPort}` });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`cannot connect to Redis at redis://farm:***@${hostPort}: WRONGPASS`);
    expect(refused.stderr).toContain('(the user or password in REDIS_URL is refused)');
  });

  it('shownRedisUrl hides only the password', () => {
    expect(shownRedisUrl('redis://127.0.0.1:6379/0')).toBe('redis://127.0.0.1:6379/0');
    expect(shownRedisUrl('rediss://default:p@ss:w0rd@redis.farm:6380')).toBe('rediss://default:***@redis.farm:6380');
    expect(shownRedisUrl('redis://:only-pass@10.0.0.5')).toBe('redis://:***@10.0.0.5');
    expect(shownRedisUrl('redis://:pa/ss@10.0.0.5:6379/1')).toBe('redis://:***@10.0.0.5:6379/1');
    expect(shownRedisUrl('redis://only-pass@10.0.0.5')).toBe('redis://***@10.0.0.5');
    // Refused for their scheme, and printed in that refusal.
    expect(shownRedisUrl('http://farm:s3cret@10.0.0.5')).toBe('http://farm:***@10.0.0.5');
    expect(shownRedisUrl('redis//:s3cret@10.0.0.5')).toBe('redis//:***@10.0.0.5');
    expect(shownRedisUrl('10.0.0.5:6379')).toBe('10.0.0.5:6379');
  });
});

describe('rollout start --at', () => {
  const now = Date.parse('2026-11-30T12:00:00Z');
  it('takes an ISO time with its zone, and refuses one without (it would be read in this host\'s zone) or in the past', () => {
    expect(parseAt('2026-12-01T10:00:00Z', now)).toBe(Date.parse('2026-12-01T10:00:00Z'));
    expect(parseAt('2026-12-01T11:00+01:00', now)).toBe(Date.parse('2026-12-01T10:00:00Z'));
    expect(parseAt(undefined, now)).toBeUndefined();
    for (const bad of ['2026-12-01 10:00', '2026-12-01T10:00:00', '2026-12-01', 'tomorrow', '2026-13-01T00:00:00Z']) {
      expect(() => parseAt(bad, now)).toThrow(`--at must be an ISO time with its zone, like 2026-11-24T14:00:00Z (UTC) or 2026-11-24T15:00:00+01:00, got "${bad}"`);
    }
    expect(() => parseAt('2026-11-30T11:00:00Z', now)).toThrow('--at "2026-11-30T11:00:00Z" is in the past');
  });

  it('refuses a day the month lacks, or hour 24, which Date.parse would roll over into the next month or day', () => {
    expect(() => parseAt('2027-02-30T00:00:00Z', now)).toThrow('--at "2027-02-30T00:00:00Z" is not a real time: 2027-02 has 28 days');
    expect(() => parseAt('2027-04-31T10:00+02:00', now)).toThrow('2027-04 has 30 days');
    expect(() => parseAt('2027-01-01T24:00:00Z', now)).toThrow('--at "2027-01-01T24:00:00Z" is not a real time: hours go from 00 to 23');
    expect(() => parseAt('2027-01-00T10:00:00Z', now)).toThrow('got "2027-01-00T10:00:00Z"');
    expect(parseAt('2028-02-29T10:00:00Z', now)).toBe(Date.parse('2028-02-29T10:00:00Z'));
    expect(parseAt('2026-12-31T23:59:59Z', now)).toBe(Date.parse('2026-12-31T23:59:59Z'));
  });

  it('writes a duration as it would be typed, and reads it back (schedule list said "every 8640000s" for 100d)', () => {
    for (const [ms, text] of [[100 * 86_400_000, '100d'], [90 * 60_000, '90m'], [3_600_000, '1h'], [45_000, '45s'], [800, '800ms'], [1_500, '1500ms']] as const) {
      expect(durationText(ms)).toBe(text);
      expect(parseDurationMs(text, '--every')).toBe(ms);
    }
  });

  it('refuses a duration without its unit where one is required (an operator\'s "10" may mean seconds or minutes)', () => {
    expect(() => parseDurationMs('10', '--pause-between', { unitRequired: true })).toThrow('--pause-between needs a unit, like 30s, 10m or 1h, got "10"');
    expect(parseDurationMs('10m', '--pause-between', { unitRequired: true })).toBe(600_000);
    expect(() => gatesFromFlags({ waves: '50%,100%', maxFailureRate: '5%', minSample: 10, pauseBetween: '10' })).toThrow('--pause-between needs a unit');
  });

  it('says how far off a start is in units a person reads (it said "in 720 h" for a month)', () => {
    expect(untilText(now + 30 * 86_400_000, now)).toBe('in 30 days');
    expect(untilText(now + 19 * 3_600_000, now)).toBe('in 19 h');
    expect(untilText(now + 5 * 60_000, now)).toBe('in 5 min');
    expect(untilText(now + 20_000, now)).toBe('in 20 s');
  });
});

describe('rollout flags', () => {
  it('name the flag, the range and the value', () => {
    expect(parsePercent('5%', '--max-failure-rate')).toBe(0.05);
    expect(() => parsePercent('150%', '--max-failure-rate')).toThrow('--max-failure-rate must be a percentage from 0% to 100%, like 5%, got "150%"');
    expect(parseWaves('1%,10%,100%')).toEqual([0.01, 0.1, 1]);
    expect(() => parseWaves('50%,10%,100%')).toThrow('--waves must increase (cumulative fractions), got "50%,10%,100%"');
    expect(() => parseWaves('10%,50%')).toThrow('--waves must end at 100%, got "10%,50%"');
    // 1e30 was taken (and every miner then refused it as INVALID_JOB), as were 0x10 and " 12 ".
    for (const bad of ['-5', '0', '2800.5', 'lots', '', '1e30', '0x10', ' 12 ', '100001']) {
      expect(() => specFromFlags({ powerTarget: bad })).toThrow(`--power-target must be a positive whole number of watts up to 100000, got "${bad}"`);
    }
    expect(specFromFlags({ powerTarget: '2800' })).toEqual({ kind: 'power-target', watts: 2800 });
    for (const bad of ['0', '-1', '1e3', 'Infinity', '.5', '100000.5']) {
      expect(() => specFromFlags({ hashrateTarget: bad })).toThrow(`--hashrate-target must be a positive number of TH/s up to 100000, got "${bad}"`);
    }
    expect(specFromFlags({ hashrateTarget: '110.5' })).toEqual({ kind: 'hashrate-target', terahashPerSecond: 110.5 });
  });
});

describe('a poll short of open files', () => {
  /** `bos-fleet poll --json` in a shell whose open-files limit (soft and hard: Node raises soft to hard) is `limit`. */
  async function pollUnder(limit: number, concurrency: number, files: FleetFiles): Promise<{ stderr: string; counts: Record<string, number> }> {
    const args = ['poll', '--inventory', files.inventory, '--credentials', files.credentials, '--redis', redisUrl(), '--prefix', uniquePrefix('fds'), '--concurrency', String(concurrency), '--json'];
    const child = spawn('bash', ['-c', `ulimit -Sn ${limit} && ulimit -Hn ${limit} && exec "$0" "$@"`, process.execPath, CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    expect(await exited(child), stderr).toBe(0);
    return { stderr, counts: (JSON.parse(stdout) as { counts: Record<string, number> }).counts };
  }

  it('keeps its pool under the limit, and runs fewer miners at once when even those in flight would not fit: every miner gets its own outcome', async () => {
    const tf = await startTestFleet(150, '127.45.0.1');
    const files = writeFleetFiles(inventoryCsv(tf.fleet.miners.map((m, index) => ({ ...m, index }))));
    try {
      // 150 miners, 20 at a time, 170 files: a pool keeping a channel per miner would run out (MINER_UNREACHABLE before).
      const fitted = await pollUnder(170, 20, files);
      expect(fitted.stderr).toContain("above this process's limit of 170 (ulimit -n): using --max-connections 84 instead");
      expect(fitted.counts).toEqual({ OK: 150 });
      // 100 in flight do not fit in 120 files: it polls 26 at a time, every miner with a connection
      // (before, 100 at a time left some without one: WORKER_OUT_OF_RESOURCES, not the truth about them).
      const short = await pollUnder(120, 100, files);
      expect(short.stderr).toContain("above this process's limit of 120 (ulimit -n): using --concurrency 26 and --max-connections 26 instead");
      expect(short.counts).toEqual({ OK: 150 });
    } finally {
      await tf.fleet.close();
      rmSync(files.dir, { recursive: true, force: true });
    }
  });
});

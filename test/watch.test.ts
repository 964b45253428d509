// `bos-fleet watch`: miners' status followed live over GetMinerStatus streams, through reboots,
// refused connections and frozen miners, against the simulator — and the command as operators run it.
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetCore } from '../src/core/index.js';
import { SimFleet } from '../src/sim/fleet.js';
import { inventoryCsv } from '../src/sim/plan.js';
import { watchStatuses, type WatchEvent } from '../src/watch/status-watch.js';
import { expectExit, runCli, spawnCli, writeFleetFiles, type FleetFiles } from './helpers/cli.js';
import { namedMiners, simTarget, testCore } from './helpers/core.js';
import { until } from './helpers/until.js';

const NAMES = ['rebooted', 'refused', 'frozen', 'bad-auth', 'cli-paused', 'cli-quiet', 'cli-bad-auth'] as const;
const { host, specs } = namedMiners(NAMES, '127.46.0.1');
let fleet: SimFleet;
let files: FleetFiles;

beforeAll(async () => {
  fleet = await SimFleet.start({
    miners: specs((id) => (id.endsWith('bad-auth') ? { badAuth: true } : {})),
  });
  files = writeFleetFiles(inventoryCsv(specs()));
});
afterAll(async () => {
  await fleet.close();
  rmSync(files.dir, { recursive: true, force: true });
});

/** Watches `names` until `done` says so (or 20 s pass); returns every event. */
async function watch(core: FleetCore, names: (typeof NAMES)[number][], act: (events: WatchEvent[]) => Promise<boolean>, heartbeatMs?: number): Promise<WatchEvent[]> {
  const events: WatchEvent[] = [];
  const ac = new AbortController();
  const watching = watchStatuses(core, names.map((n) => simTarget(n, host(n))), { signal: ac.signal, onEvent: (e) => events.push(e), retryDelayMs: 50, ...(heartbeatMs ? { heartbeatMs } : {}) });
  try {
    await until(() => act(events), 20_000, 20);
  } finally {
    ac.abort();
    await watching;
  }
  return events;
}

const brief = (e: WatchEvent) => (e.kind === 'status' ? `${e.kind} ${e.status}${e.previous ? ` was ${e.previous}` : ''}${e.downMs !== undefined ? ' back' : ''}` : `${e.kind} ${e.error.code}`);

describe('watchStatuses', () => {
  it('reports the first status, a change, an outage and the return, once each', async () => {
    const core = testCore({ stream: { reconnectBaseDelayMs: 20, reconnectMaxDelayMs: 100 } });
    const other = testCore();
    let step = 0;
    try {
      const events = await watch(core, ['rebooted'], async (ev) => {
        if (step === 0 && ev.length === 1) {
          step = 1;
          await other.miner(simTarget('rebooted', host('rebooted'))).pauseMining();
        } else if (step === 1 && ev.length === 2) {
          step = 2;
          await fleet.reboot('rebooted', 500); // comes back NORMAL, as a rebooted miner does
        }
        return ev.some((e) => e.kind === 'status' && e.downMs !== undefined);
      });
      expect(events.map(brief)).toEqual(['status NORMAL', 'status PAUSED was NORMAL', 'lost CONNECTION_LOST', 'status NORMAL was PAUSED back']);
      const back = events[3] as Extract<WatchEvent, { kind: 'status' }>;
      expect(back.downMs).toBeGreaterThanOrEqual(400);
      expect(core.pool.stats().inUse).toBe(0); // the stream gave its channel back
    } finally {
      core.close();
      other.close();
    }
  });

  it('a miner that refuses connections is lost until it listens again, then reported back', async () => {
    await fleet.setFaults('refused', { refuse: true });
    const core = testCore({ stream: { reconnectBaseDelayMs: 20, reconnectMaxDelayMs: 100 } });
    let healed = false;
    try {
      const events = await watch(core, ['refused'], async (ev) => {
        if (!healed && ev.length === 1) {
          healed = true;
          await fleet.setFaults('refused', {});
        }
        return ev.length >= 2;
      });
      expect(events.map(brief)).toEqual(['lost MINER_UNREACHABLE', 'status NORMAL back']);
    } finally {
      core.close();
      await fleet.setFaults('refused', {});
    }
  });

  it('a miner that freezes under an open stream is found by the heartbeat, not shown NORMAL for ever', async () => {
    const core = testCore({ stream: { reconnectBaseDelayMs: 20, reconnectMaxDelayMs: 100 } });
    let frozen = false;
    let thawed = false;
    try {
      const events = await watch(
        core,
        ['frozen'],
        async (ev) => {
          if (!frozen && ev.length === 1) {
            frozen = true;
            await fleet.setFaults('frozen', { hang: true }); // the stream stays open; no call is answered
          } else if (frozen && !thawed && ev.length === 2) {
            thawed = true;
            await fleet.setFaults('frozen', {});
          }
          return ev.length >= 3;
        },
        200,
      );
      expect(events.map(brief)).toEqual(['status NORMAL', 'lost MINER_TIMEOUT', 'status NORMAL back']);
    } finally {
      core.close();
      await fleet.setFaults('frozen', {});
    }
  });

  it('a refused login stops that miner at once: one Login, no retry loop', async () => {
    const core = testCore();
    const before = (await fleet.callCounts('bad-auth'))['Login'] ?? 0;
    try {
      const events = await watch(core, ['bad-auth'], async (ev) => ev.length >= 1);
      expect(events.map(brief)).toEqual(['stopped MINER_AUTH_FAILED']);
      expect((await fleet.callCounts('bad-auth'))['Login']).toBe(before + 1);
    } finally {
      core.close();
    }
  });
});

describe('bos-fleet watch', () => {
  const base = () => ['watch', '--inventory', files.inventory, '--credentials', files.credentials];

  it('--until exits 0 once every watched miner reports the status', async () => {
    const child = spawnCli([...base(), '--miner', 'cli-paused', '--until', 'paused', '--timeout', '30s']);
    await until(async () => child.output().stdout.includes('NORMAL'), 20_000, 50);
    const core = testCore();
    try {
      await core.miner(simTarget('cli-paused', host('cli-paused'))).pauseMining();
    } finally {
      core.close();
    }
    await expectExit(child, 0);
    const { stdout, stderr } = child.output();
    expect(stdout).toMatch(/cli-paused +127\.46\.0\.5:50051 +PAUSED \(was NORMAL\)/);
    expect(stderr).toContain('the watched miner is PAUSED');
  });

  it('--timeout exits 2 naming each miner not there; --json ends with an end event', async () => {
    const r = await runCli([...base(), '--miner', 'cli-quiet', '--miner', 'cli-bad-auth', '--until', 'PAUSED', '--timeout', '2s', '--json']);
    expect(r.code).toBe(2);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toContainEqual(expect.objectContaining({ minerId: 'cli-quiet', host: host('cli-quiet'), port: 50051, event: 'status', status: 'NORMAL' }));
    expect(lines).toContainEqual(expect.objectContaining({ minerId: 'cli-bad-auth', event: 'stopped', code: 'MINER_AUTH_FAILED' }));
    expect(lines.at(-1)).toMatchObject({ event: 'end', result: 'timeout', until: 'PAUSED', watched: 2, notThere: ['cli-quiet', 'cli-bad-auth'] });
    expect(r.stderr).toContain('timeout after 2s: 2 of 2 watched miners not PAUSED: cli-quiet NORMAL, cli-bad-auth STOPPED (MINER_AUTH_FAILED)');
    expect(r.stdout + r.stderr).not.toContain('sim-password');
  });

  it('ends with exit 2 when no watched miner is left (each stopped on an error retrying cannot fix)', async () => {
    const r = await runCli([...base(), '--miner', 'cli-bad-auth']);
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/cli-bad-auth .* STOPPED MINER_AUTH_FAILED: .* — .*check the username and password/);
    expect(r.stderr).toContain('no miner left to watch: each stopped on an error retrying cannot fix: cli-bad-auth STOPPED (MINER_AUTH_FAILED)');
  });

  it('refuses bad input, naming the option and the value', async () => {
    const cases: [string[], string][] = [
      [['--miner', 'nope', '--miner', 'cli-quiet'], `--miner "nope": inventory ${files.inventory} has no miner of that id`],
      [['--until', 'mining'], '--until must be one of NORMAL, PAUSED, NOT_STARTED, SUSPENDED, RESTRICTED, got "mining"'],
      [['--timeout', '10m'], '--timeout goes with --until'],
      [['--until', 'NORMAL', '--timeout', '10'], '--timeout needs a unit, like 90s or 10m, got "10"'],
      [['--until', 'NORMAL', '--timeout', '8d'], '--timeout must be from 1s to 7d, got "8d"'],
    ];
    for (const [args, message] of cases) {
      const r = await runCli([...base(), ...args]);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toContain(message);
    }
  });
});

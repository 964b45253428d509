// Results output: streamed batch by batch, it is the same text as the whole list formatted at once.
import { describe, expect, it } from 'vitest';
import type { Outcome } from '../src/fleet/outcome.js';
import { columns, outcomesText, progressRenderer, settingText, summaryText, writeOutcomes } from '../src/cli/render.js';

function outcome(i: number): Outcome {
  const ok = i % 3 !== 0;
  return {
    runId: 'run-1',
    minerId: `miner-${String(i).padStart(3, '0')}`,
    host: `10.0.0.${i}`,
    port: 50051,
    operation: 'poll',
    status: ok ? 'ok' : 'failed',
    code: ok ? 'OK' : 'MINER_TIMEOUT',
    attempts: ok ? 1 : 3,
    jobAttempts: ok ? 1 : 2,
    durationMs: 100 + i,
    finishedAt: new Date(1_700_000_000_000 + i).toISOString(),
    transport: 'plaintext',
    ...(ok ? { data: { model: 'Antminer S21', hashrate: { realGhs5m: 200_000 }, power: { consumptionWatts: 3500 }, note: 'a "quoted", comma\nand newline' } } : { error: { message: 'no connection, "refused"', suggestion: 's' } }),
  };
}

async function streamed(outcomes: Outcome[], format: 'table' | 'json' | 'csv', batch: number, keep?: (o: Outcome) => boolean): Promise<string> {
  let text = '';
  async function* batches() {
    for (let i = 0; i < outcomes.length; i += batch) yield outcomes.slice(i, i + batch);
  }
  await writeOutcomes(batches(), format, async (t) => void (text += t), { operation: 'poll', ...(keep ? { keep } : {}) });
  return text;
}

describe('results output', () => {
  const all = Array.from({ length: 23 }, (_, i) => outcome(i));
  for (const format of ['json', 'csv', 'table'] as const) {
    it(`${format}: streamed in batches is the whole list's text`, async () => {
      expect(await streamed(all, format, 5)).toBe(`${outcomesText(all, format, 'poll')}\n`);
      const failed = all.filter((o) => o.status !== 'ok');
      expect(await streamed(all, format, 4, (o) => o.status !== 'ok')).toBe(`${outcomesText(failed, format, 'poll')}\n`);
      expect(await streamed([], format, 5)).toBe(`${outcomesText([], format, 'poll')}\n`);
    });
  }

  it('json is the outcomes array, as JSON.stringify(array, null, 2) gives it', async () => {
    expect(outcomesText(all, 'json')).toBe(JSON.stringify(all, null, 2));
    expect(JSON.parse(await streamed(all, 'json', 7))).toEqual(all);
    expect(outcomesText([], 'json')).toBe('[]');
  });
});

describe('table', () => {
  it("a change's detail says what it did, as a person reads it: applied before → after, unchanged, a long setting cut", () => {
    const change = (data: unknown): Outcome => ({ ...outcome(1), operation: 'power-target', data });
    const pools = { groups: [{ name: 'Main', quota: 1, fixedShareRatio: null, pools: Array.from({ length: 4 }, (_, i) => ({ url: `stratum+tcp://pool-${i}.example:3333`, user: 'farm.m1', enabled: true })) }] };
    const details = outcomesText([
      change({ change: 'applied', before: { powerTargetWatts: 2760 }, after: { powerTargetWatts: 3100 }, verified: true }),
      change({ change: 'unchanged', before: { powerTargetWatts: 3100 }, after: { powerTargetWatts: 3100 }, verified: true }),
      change({ change: 'would-apply', before: { minerStatus: 'NORMAL' }, after: { minerStatus: 'PAUSED' }, verified: false }),
      change({ change: 'applied', before: pools, after: pools, verified: true }),
    ], 'table').split('\n').slice(1).map((row) => row.slice(row.indexOf(' ms  ') + 5));
    expect(details.slice(0, 3)).toEqual([
      'applied powerTargetWatts 2760 → powerTargetWatts 3100',
      'unchanged powerTargetWatts 3100',
      'would apply minerStatus NORMAL → minerStatus PAUSED',
    ]);
    // Each side cut at 100 characters.
    expect(details[3]).toMatch(/^applied (Main \(quota 1\): stratum\+tcp:\/\/pool-0\.example:3333 farm\.m1, .{40}…) → \1$/);
  });

  it('shows pool groups by name, share, URL and user (a disabled pool says so), and any other setting as name and value', () => {
    const groups = [
      { name: 'Main', quota: 2, fixedShareRatio: null, pools: [{ url: 'stratum+tcp://a.example:3333', user: 'farm.m1', enabled: true }, { url: 'stratum+tcp://b.example:3333', user: 'farm.m1', enabled: false }] },
      { name: 'Backup', quota: null, fixedShareRatio: 0.25, pools: [] },
    ];
    expect(settingText({ groups })).toBe('Main (quota 2): stratum+tcp://a.example:3333 farm.m1, stratum+tcp://b.example:3333 farm.m1 (disabled); Backup (share 0.25): no pools');
    expect(settingText({ groups: [] })).toBe('no pool groups');
    expect(settingText({ hashrateTargetThs: null, powerTargetWatts: 2760 })).toBe('hashrateTargetThs none, powerTargetWatts 2760');
    expect(settingText({ uptimeS: 60, bootedAfterRequest: true })).toBe('uptimeS 60, bootedAfterRequest true');
    expect(settingText(undefined)).toBe('null');
    expect(settingText({ powerTargetWatts: 123456 }, 10)).toBe('powerTarg…');
  });
});

describe('csv', () => {
  it('quotes what needs it and makes a miner message that looks like a formula inert', () => {
    const o = (message: string): Outcome => ({ ...outcome(0), error: { message, suggestion: 's' } });
    const rows = outcomesText([o('=HYPERLINK("http://x","y")'), o('-1 boards'), o('carriage\rreturn'), o('plain, text')], 'csv').split('\n').slice(1);
    // The message, then the (empty) data columns of a failed poll.
    const messages = rows.map((r) => r.slice(r.indexOf('plaintext,') + 'plaintext,'.length).replace(/,+$/, ''));
    expect(messages).toEqual([`"'=HYPERLINK(""http://x"",""y"")"`, `'-1 boards`, `"carriage\rreturn"`, `"plain, text"`]);
  });
});

describe('csv data columns', () => {
  const cells = (row: string) => row.split(','); // the rows below quote nothing
  const snapshot = {
    apiVersion: '1.2.0', firmware: '23.03', model: 'S19', hostname: '=cmd', macAddress: 'aa', serialNumber: null, uptimeS: 60, minerStatus: 'NORMAL',
    hashrate: { realGhs5m: 100000, realGhs1h: 99000, nominalGhs: 104000 },
    power: { consumptionWatts: 3200, efficiencyJth: 32, targetWatts: 3300 },
    temperature: { chipMaxC: 80, boardMaxC: 65 },
    fans: [{ position: 0, rpm: 4000 }, { position: 1, rpm: 4100 }],
    hashboards: [{ id: '1', enabled: true }, { id: '2', enabled: false }],
    pools: [{ group: 'g', url: 'stratum+tcp://a:3333', user: 'u', active: true, alive: true, acceptedShares: 1, rejectedShares: 0 }, { group: 'g', url: 'stratum+tcp://b:3333', user: 'u', active: false, alive: false, acceptedShares: 0, rejectedShares: 0 }],
    tuner: { state: 'STABLE' },
    errors: [{ message: 'fan slow', codes: [] }],
    unsupported: ['GetErrors'],
  };

  it('a poll run: its snapshot flattened, named as in the JSON; miner text made inert; a failed miner has empty cells', () => {
    const [header, ok, failed] = outcomesText([{ ...outcome(1), data: snapshot }, { ...outcome(3), error: { message: 'refused', suggestion: 's' } }], 'csv').split('\n') as [string, string, string];
    const named = Object.fromEntries(cells(header).map((name, i) => [name, cells(ok)[i]]));
    expect(named).toMatchObject({
      minerId: 'miner-001', code: 'OK', apiVersion: '1.2.0', model: 'S19', hostname: "'=cmd", serialNumber: '', 'hashrate.realGhs5m': '100000', 'power.consumptionWatts': '3200',
      'temperature.chipMaxC': '80', 'fans.rpm': '4000;4100', 'hashboards.enabled': '1', 'hashboards.count': '2', 'pools.activeUrl': 'stratum+tcp://a:3333', 'pools.alive': '1',
      'tuner.state': 'STABLE', errors: 'fan slow', unsupported: 'GetErrors',
    });
    expect(cells(failed).length).toBe(cells(header).length);
    expect(cells(failed).slice(13).every((c) => c === '')).toBe(true);
  });

  it('a change run: change, before and after (JSON), verified; data from another version leaves cells empty', () => {
    const change = { ...outcome(1), operation: 'power-target', data: { change: 'applied', before: { powerTargetWatts: 3500 }, after: { powerTargetWatts: 3100 }, verified: true } };
    const text = outcomesText([change], 'csv');
    expect(text.split('\n')[0]).toMatch(/,message,change,before,after,verified$/);
    expect(text.split('\n')[1]).toMatch(/,applied,"\{""powerTargetWatts"":3500\}","\{""powerTargetWatts"":3100\}",true$/);
    const odd = outcomesText([{ ...outcome(1), data: { model: 'S19' } }], 'csv', 'poll').split('\n')[1] as string;
    expect(odd).toContain(',,S19,');
  });
});

describe('table', () => {
  it('shows the control characters of a miner message, never sends them to the terminal', () => {
    // An IPv6 miner's address is shown as people write one, in brackets before the port.
    expect(outcomesText([{ ...outcome(1), host: 'fd00::5' }], 'table').split('\n')[1]).toMatch(/^miner-001 {2}\[fd00::5\]:50051 {2}OK /);
    const text = outcomesText([{ ...outcome(0), error: { message: 'boom\u001b[2J\u0007\nnext', suggestion: 's' } }], 'table');
    expect(text.split('\n')[1]).toMatch(/boom\\x1b\[2J\\x07\\x0anext$/);
    expect(text).not.toMatch(/[\u0000-\u0009\u000b-\u001f]/);
  });
});

describe('progress', () => {
  const p = (done: number, counts: Record<string, number>) => ({ done, total: 100, counts });

  it('off a terminal, logs a plain line at most every logEveryMs while the counts move', () => {
    let t = 0;
    const lines: string[] = [];
    const bar = progressRenderer({ isTTY: false, write: (s: string) => lines.push(s) > 0 }, { logEveryMs: 10_000, now: () => t });
    bar.update(p(5, { OK: 5 })); // too soon
    t = 10_000;
    bar.update(p(40, { OK: 38, MINER_TIMEOUT: 2 }));
    t = 15_000;
    bar.update(p(60, { OK: 58, MINER_TIMEOUT: 2 })); // too soon
    t = 30_000;
    bar.update(p(40, { OK: 38, MINER_TIMEOUT: 2 })); // nothing moved
    bar.update(p(100, { OK: 97, MINER_TIMEOUT: 3 }));
    bar.done();
    expect(lines).toEqual(['progress: 40/100  OK 38  MINER_TIMEOUT 2\n', 'progress: 100/100  OK 97  MINER_TIMEOUT 3\n']);
  });

  it('on a terminal, redraws one bar and ends it with a newline', () => {
    const out: string[] = [];
    const bar = progressRenderer({ isTTY: true, write: (s: string) => out.push(s) > 0 });
    bar.update(p(50, { OK: 50 }));
    bar.update(p(50, { OK: 50 })); // unchanged: not redrawn
    bar.done();
    expect(out).toEqual([`\r\x1b[2K[${'#'.repeat(15)}${'.'.repeat(15)}] 50/100  OK 50`, '\n']);
  });
});

describe('columns', () => {
  it('pads each column to its widest cell, right-aligns those asked, leaves the last unpadded', () => {
    const lines = columns(
      [
        ['RUN', 'OPERATION', 'DONE', 'OK'],
        ['run-1', 'hashrate-target', '5/12', '5'],
        ['r', 'poll', '1000/1000', '1000  (cut short)'],
      ],
      [2],
    );
    expect(lines).toEqual([
      'RUN    OPERATION             DONE  OK',
      'run-1  hashrate-target       5/12  5',
      'r      poll             1000/1000  1000  (cut short)',
    ]);
  });
});

describe('a run summary', () => {
  const record = { runId: 'run-x', operation: 'poll', params: {}, inventoryFile: 'f', inventoryDigest: 'd', createdAt: '', createdAtMs: 0, total: 11 } as Parameters<typeof summaryText>[0];
  const summary = (done: number) => ({ total: 11, done, counts: (done ? { OK: done } : {}) as Record<string, number>, p50DurationMs: 200, p95DurationMs: 900, throughputPerS: 2.5, elapsedMs: 2_000 });

  it('of an unfinished run says how many miners are still to go, and gives no rate for none done', () => {
    expect(summaryText(record, summary(0))).toBe('run run-x  poll  0/11 miners done, 11 to go');
    expect(summaryText(record, summary(7)).split('\n')[0]).toBe('run run-x  poll  7/11 miners so far (4 to go), in 2000 ms (2.5 miners/s)  p50 200 ms  p95 900 ms');
    expect(summaryText(record, summary(11)).split('\n')[0]).toBe('run run-x  poll  11/11 miners in 2000 ms (2.5 miners/s)  p50 200 ms  p95 900 ms');
  });

  it('of a dry run says so: it changed nothing', () => {
    const dry = { ...record, operation: 'power-target', params: { dryRun: true } };
    expect(summaryText(dry, summary(11)).split('\n')[0]).toBe('run run-x  power-target (dry run)  11/11 miners in 2000 ms (2.5 miners/s)  p50 200 ms  p95 900 ms');
  });
});

// Results output: streamed batch by batch, it is the same text as the whole list formatted at once.
import { describe, expect, it } from 'vitest';
import type { Outcome } from '../src/fleet/outcome.js';
import { outcomesText, progressRenderer, writeOutcomes } from '../src/cli/render.js';

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
  await writeOutcomes(batches(), format, async (t) => void (text += t), keep);
  return text;
}

describe('results output', () => {
  const all = Array.from({ length: 23 }, (_, i) => outcome(i));
  for (const format of ['json', 'csv', 'table'] as const) {
    it(`${format}: streamed in batches is the whole list's text`, async () => {
      expect(await streamed(all, format, 5)).toBe(`${outcomesText(all, format)}\n`);
      const failed = all.filter((o) => o.status !== 'ok');
      expect(await streamed(all, format, 4, (o) => o.status !== 'ok')).toBe(`${outcomesText(failed, format)}\n`);
      expect(await streamed([], format, 5)).toBe(`${outcomesText([], format)}\n`);
    });
  }

  it('json is the outcomes array, as JSON.stringify(array, null, 2) gives it', async () => {
    expect(outcomesText(all, 'json')).toBe(JSON.stringify(all, null, 2));
    expect(JSON.parse(await streamed(all, 'json', 7))).toEqual(all);
    expect(outcomesText([], 'json')).toBe('[]');
  });
});

describe('csv', () => {
  it('quotes what needs it and makes a miner message that looks like a formula inert', () => {
    const o = (message: string): Outcome => ({ ...outcome(0), error: { message, suggestion: 's' } });
    const rows = outcomesText([o('=HYPERLINK("http://x","y")'), o('-1 boards'), o('carriage\rreturn'), o('plain, text')], 'csv').split('\n').slice(1);
    const messages = rows.map((r) => r.slice(r.indexOf('plaintext,') + 'plaintext,'.length));
    expect(messages).toEqual([`"'=HYPERLINK(""http://x"",""y"")"`, `'-1 boards`, `"carriage\rreturn"`, `"plain, text"`]);
  });
});

describe('table', () => {
  it('shows the control characters of a miner message, never sends them to the terminal', () => {
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

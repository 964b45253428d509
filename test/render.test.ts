// Results output: streamed batch by batch, it is the same text as the whole list formatted at once.
import { describe, expect, it } from 'vitest';
import type { Outcome } from '../src/fleet/outcome.js';
import { outcomesText, writeOutcomes } from '../src/cli/render.js';

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

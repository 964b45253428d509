// Wave plans (`1%,10%,50%,100%`: cumulative fractions of the inventory) and percentages.

export function parsePercent(text: string, option: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(text);
  const v = m ? Number(m[1]) : NaN;
  if (!m || v < 0 || v > 100) throw new Error(`${option} must be a percentage from 0% to 100%, like 5%, got "${text}"`);
  return v / 100;
}

/** Cumulative fractions, strictly increasing, ending at 100%. */
export function parseWaves(text: string): number[] {
  const parts = text.split(',').map((p) => parsePercent(p, '--waves'));
  for (let i = 1; i < parts.length; i++) {
    if ((parts[i] as number) <= (parts[i - 1] as number)) throw new Error(`--waves must increase (cumulative fractions), got "${text}"`);
  }
  if (parts.length === 0 || parts[parts.length - 1] !== 1) throw new Error(`--waves must end at 100%, got "${text}"`);
  if ((parts[0] as number) <= 0) throw new Error(`--waves must start above 0%, got "${text}"`);
  return parts;
}

/** End index (exclusive) of each wave over n miners; empty waves are dropped. */
export function waveBounds(n: number, fractions: number[]): number[] {
  const ends: number[] = [];
  for (const f of fractions) {
    const end = Math.min(n, Math.max(1, Math.ceil(f * n)));
    if (ends.length === 0 || end > (ends[ends.length - 1] as number)) ends.push(end);
  }
  return ends;
}

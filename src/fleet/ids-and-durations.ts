// Small parsers and ids shared by the CLI, the producer, rollouts and the simulator.
import { randomBytes } from 'node:crypto';

/** `<prefix>-20261124T044502Z-9a7fdf`: sortable by time, unique, and valid as a BullMQ job-id part. */
export function timestampedId(prefix: string, nowMs = Date.now()): string {
  const t = new Date(nowMs).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${prefix}-${t}-${randomBytes(3).toString('hex')}`;
}

/** `800ms`, `30s`, `10m`, `1h`; a bare number is in `defaultUnit`. The error names the option. */
export function parseDurationMs(text: string, option: string, opts: { defaultUnit?: 'ms' | 's'; example?: string } = {}): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  if (!m) throw new Error(`${option} must be a duration like ${opts.example ?? '30s, 10m or 1h'}, got "${text}"`);
  const n = Number(m[1]);
  const unit = m[2] ?? opts.defaultUnit ?? 's';
  return Math.round(unit === 'ms' ? n : unit === 's' ? n * 1000 : unit === 'm' ? n * 60_000 : n * 3_600_000);
}

// Small parsers and ids shared by the CLI, the producer, rollouts and the simulator.
import { randomBytes } from 'node:crypto';

/** `<prefix>-20261124T044502Z-9a7fdf`: sortable by time, unique, and valid as a BullMQ job-id part. */
/**
 * One call's token, sent with a command that must not act twice: ioredis sends a command again on a
 * new connection when the old one dropped before its reply, and the token tells that second run apart
 * from another caller's.
 */
export function callToken(): string {
  return randomBytes(8).toString('hex');
}

export function timestampedId(prefix: string, nowMs = Date.now()): string {
  const t = new Date(nowMs).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${prefix}-${t}-${randomBytes(3).toString('hex')}`;
}

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * `800ms`, `30s`, `10m`, `1h`, `7d`; a bare number is in `defaultUnit`, or refused with `unitRequired`
 * (an operator's `10` may mean seconds or minutes). The error names the option.
 */
export function parseDurationMs(text: string, option: string, opts: { defaultUnit?: 'ms' | 's'; example?: string; unitRequired?: boolean } = {}): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  if (!m) throw new Error(`${option} must be a duration like ${opts.example ?? '30s, 10m or 1h'}, got "${text}"`);
  if (opts.unitRequired && !m[2]) throw new Error(`${option} needs a unit, like ${opts.example ?? '30s, 10m or 1h'}, got "${text}"`);
  const unit = (m[2] ?? opts.defaultUnit ?? 's') as keyof typeof UNIT_MS;
  return Math.round(Number(m[1]) * UNIT_MS[unit]);
}

/** A duration as it would be typed: the largest unit that divides it (`7d`, `90m`, `45s`, `800ms`). */
export function durationText(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) if (ms >= UNIT_MS[unit] && ms % UNIT_MS[unit] === 0) return `${ms / UNIT_MS[unit]}${unit}`;
  return `${ms}ms`;
}

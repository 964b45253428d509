// The audit log: an append-only Redis stream of rollout, rollback, abort and schedule changes.
import os from 'node:os';
import type { Redis } from 'ioredis';
import { DEFAULT_PREFIX } from '../fleet/keys.js';
import { callToken } from '../fleet/ids-and-durations.js';

export interface AuditEntry {
  at: string;
  actor: string;
  action: string;
  /** Rollout or schedule id. */
  subject: string;
  /** Digest of the target set (inventory), when there is one. */
  targetDigest?: string;
  details?: Record<string, unknown>;
}

export function defaultActor(): string {
  try {
    return os.userInfo().username;
  } catch {
    return process.env['USER'] ?? 'unknown';
  }
}

export const auditKey = (prefix: string) => `${prefix}:audit`;

/** An entry as the stream holds it (its `entry` field), stamped now. */
export function auditEntryJson(entry: Omit<AuditEntry, 'at'>): string {
  const full: AuditEntry = { at: new Date().toISOString(), ...entry };
  return JSON.stringify(full);
}

// Appends entry ARGV[1] to the stream KEYS[1] unless this append's marker KEYS[2] is set already, and
// sets it (for ARGV[2] ms). An append whose reply a dropped connection lost is sent again by ioredis on
// the new connection: the marker makes that one entry, not two.
const APPEND_ONCE = `
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return redis.call('XADD', KEYS[1], '*', 'entry', ARGV[1]) end
return false`;

/** How long an append's marker is kept: longer than any reconnect ioredis would still resend after. */
const SENT_MARKER_MS = 24 * 3_600_000;

/** Appends an entry, stamped now, once: a resent append (lost reply) adds nothing. Returns whether this call added it. */
export async function appendAudit(redis: Redis, entry: Omit<AuditEntry, 'at'>, prefix = DEFAULT_PREFIX): Promise<boolean> {
  const marker = `${auditKey(prefix)}:sent:${callToken()}`;
  return (await redis.eval(APPEND_ONCE, 2, auditKey(prefix), marker, auditEntryJson(entry), String(SENT_MARKER_MS))) !== null;
}

/**
 * The newest `limit` entries, oldest first; with `subject`, the newest `limit` of those whose subject
 * starts with it (a rollout's id; a schedule's id also finds the rollouts its ticks started), however
 * far back in the log they are.
 */
export async function readAudit(redis: Redis, prefix = DEFAULT_PREFIX, limit = 200, subject?: string): Promise<AuditEntry[]> {
  const found: AuditEntry[] = [];
  let end = '+';
  while (found.length < limit) {
    const rows = await redis.xrevrange(auditKey(prefix), end, '-', 'COUNT', subject ? 1_000 : limit);
    for (const [, fields] of rows) {
      const entry = JSON.parse(fields[1] ?? '{}') as AuditEntry;
      if (found.length < limit && (!subject || entry.subject?.startsWith(subject))) found.push(entry);
    }
    const last = rows.at(-1)?.[0];
    if (!subject || !last || rows.length < 1_000) break;
    end = `(${last}`; // exclusive: the page after the last entry read
  }
  return found.reverse();
}

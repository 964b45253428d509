// The audit log: an append-only Redis stream of rollout, rollback, abort and schedule changes.
import os from 'node:os';
import type { Redis } from 'ioredis';
import { DEFAULT_PREFIX } from '../fleet/keys.js';

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

export async function appendAudit(redis: Redis, entry: Omit<AuditEntry, 'at'>, prefix = DEFAULT_PREFIX): Promise<void> {
  await redis.xadd(auditKey(prefix), '*', 'entry', auditEntryJson(entry));
}

export async function readAudit(redis: Redis, prefix = DEFAULT_PREFIX, limit = 200): Promise<AuditEntry[]> {
  const rows = await redis.xrevrange(auditKey(prefix), '+', '-', 'COUNT', limit);
  return rows.map(([, fields]) => JSON.parse(fields[1] ?? '{}') as AuditEntry).reverse();
}

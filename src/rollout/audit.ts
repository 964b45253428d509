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

const auditKey = (prefix: string) => `${prefix}:audit`;

export async function appendAudit(redis: Redis, entry: Omit<AuditEntry, 'at'>, prefix = DEFAULT_PREFIX): Promise<void> {
  const full: AuditEntry = { at: new Date().toISOString(), ...entry };
  await redis.xadd(auditKey(prefix), '*', 'entry', JSON.stringify(full));
}

export async function readAudit(redis: Redis, prefix = DEFAULT_PREFIX, limit = 200): Promise<AuditEntry[]> {
  const rows = await redis.xrevrange(auditKey(prefix), '+', '-', 'COUNT', limit);
  return rows.map(([, fields]) => JSON.parse(fields[1] ?? '{}') as AuditEntry).reverse();
}

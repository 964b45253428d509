// Login sessions of simulated miners: tokens expire after a period of inactivity; each call extends them.
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { supportsApi, type SimMinerState } from './miner.js';
import { SimStatusError } from './method-spec.js';

interface Session {
  minerId: string;
  lastUsedMs: number;
}

export class SessionTable {
  private readonly sessions = new Map<string, Session>();

  create(minerId: string, nowMs: number): string {
    const token = randomBytes(16).toString('hex');
    this.sessions.set(token, { minerId, lastUsedMs: nowMs });
    return token;
  }

  /** True when the token is valid for the miner; a valid use extends the session. */
  touch(token: string | undefined, minerId: string, ttlMs: number, nowMs: number): boolean {
    if (!token) return false;
    const s = this.sessions.get(token);
    if (!s || s.minerId !== minerId) return false;
    if (nowMs - s.lastUsedMs > ttlMs) {
      this.sessions.delete(token);
      return false;
    }
    s.lastUsedMs = nowMs;
    return true;
  }

  expire(minerId?: string): void {
    for (const [token, s] of this.sessions) {
      if (minerId === undefined || s.minerId === minerId) this.sessions.delete(token);
    }
  }
}

/** Login semantics: checks the miner's credentials; API < 1.1.0 returns the token only in the header. */
export function loginReply(sessions: SessionTable, m: SimMinerState, request: Record<string, unknown>, now: number, defaultTtlMs: number): { body: Record<string, unknown>; header?: grpc.Metadata } {
  if (request['username'] !== m.username || request['password'] !== m.password) {
    throw new SimStatusError(grpc.status.UNAUTHENTICATED, 'invalid username or password');
  }
  const token = sessions.create(m.id, now);
  const ttlS = Math.round((m.faults.tokenExpiry?.ttlMs ?? defaultTtlMs) / 1000);
  if (!supportsApi(m, 1, 1)) {
    const header = new grpc.Metadata();
    header.set('authorization', token);
    return { body: {}, header };
  }
  return { body: { token, timeoutS: ttlS } };
}

// Login sessions of simulated miners: tokens expire after a period of inactivity; each call extends them.
import { randomBytes } from 'node:crypto';

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

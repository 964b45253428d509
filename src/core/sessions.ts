// Login sessions per miner: one cached token, one in-flight login shared by concurrent calls.

export interface Credentials {
  username: string;
  password: string;
}

export type LoginFn = () => Promise<string>;

interface Entry {
  token?: string;
  pending?: Promise<string>;
  usedAtMs: number;
}

export class SessionCache {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly now: () => number) {}

  /** The cached token, if there is one (no login). */
  cached(minerKey: string): string | undefined {
    const e = this.entries.get(minerKey);
    if (!e?.token) return undefined;
    e.usedAtMs = this.now();
    return e.token;
  }

  /** The cached token, or the result of a single shared login. */
  async token(minerKey: string, login: LoginFn): Promise<string> {
    let e = this.entries.get(minerKey);
    if (e) e.usedAtMs = this.now();
    if (e?.token) return e.token;
    if (e?.pending) return e.pending;
    e ??= { usedAtMs: this.now() };
    this.entries.set(minerKey, e);
    const entry = e;
    const pending = login().then(
      (token) => {
        entry.token = token;
        delete entry.pending;
        return token;
      },
      (err: unknown) => {
        delete entry.pending;
        throw err;
      },
    );
    entry.pending = pending;
    return pending;
  }

  /** Forgets `token` if it is still the cached one (a newer login by another call is kept). */
  invalidate(minerKey: string, token: string): void {
    const e = this.entries.get(minerKey);
    if (e?.token === token) delete e.token;
  }

  /**
   * Drops sessions unused for `idleMs` (no login in flight): the miner has expired them by then
   * (sessions end after an hour without calls), and a farm whose addresses churn would otherwise
   * keep every miner it ever saw.
   */
  sweep(idleMs: number): void {
    const before = this.now() - idleMs;
    for (const [key, e] of this.entries) if (!e.pending && e.usedAtMs <= before) this.entries.delete(key);
  }

  forget(minerKey: string): void {
    this.entries.delete(minerKey);
  }

  get size(): number {
    return this.entries.size;
  }
}

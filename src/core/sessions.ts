// Login sessions per miner: one cached token, one in-flight login shared by concurrent calls.

export interface Credentials {
  username: string;
  password: string;
}

export type LoginFn = () => Promise<string>;

export class SessionCache {
  private readonly entries = new Map<string, { token?: string; pending?: Promise<string> }>();

  /** The cached token, if there is one (no login). */
  cached(minerKey: string): string | undefined {
    return this.entries.get(minerKey)?.token;
  }

  /** The cached token, or the result of a single shared login. */
  async token(minerKey: string, login: LoginFn): Promise<string> {
    let e = this.entries.get(minerKey);
    if (e?.token) return e.token;
    if (e?.pending) return e.pending;
    e ??= {};
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

  forget(minerKey: string): void {
    this.entries.delete(minerKey);
  }

  get size(): number {
    return this.entries.size;
  }
}

// Which Redis a command uses: --redis URL, else REDIS_URL, else an embedded redis-server that
// bos-fleet manages in its state directory (AOF on), kept running so runs persist between commands.
import { embeddedRedisUrl } from './embedded.js';

/**
 * A Redis URL fit to print: its password (redis://user:secret@host, a Redis with requirepass)
 * shown as ***. Works on URLs too broken to parse, as the messages about them need it most.
 */
export function shownRedisUrl(url: string): string {
  // The user ends at the first ':'; the password runs to the last '@' (an unencoded '@' or '/' in it
  // is common). Whatever the scheme, or none: a URL refused for its scheme (http://u:pw@h, redis//…)
  // is printed in that refusal. With no ':' the whole of it is hidden (it may be a password alone).
  const at = url.lastIndexOf('@');
  const start = /^[a-z][a-z0-9+.-]*:\/\//i.exec(url)?.[0].length ?? 0;
  if (at < start) return url;
  const colon = url.indexOf(':', start);
  return `${url.slice(0, colon >= 0 && colon < at ? colon + 1 : start)}***${url.slice(at)}`;
}

export async function resolveRedisUrl(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const url = flag ?? env['REDIS_URL'];
  if (url) {
    const source = flag === undefined ? 'REDIS_URL' : '--redis';
    if (!/^rediss?:\/\//.test(url)) {
      // host:port alone (as redis-cli -h / -p take it) is the usual slip: the fix is said whole.
      const meant = /^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? '' : ` (did you mean "redis://${shownRedisUrl(url)}"?)`;
      throw new Error(`${source} must look like redis://host:6379, got "${shownRedisUrl(url)}"${meant}`);
    }
    try {
      new URL(url); // what ioredis parses it with: a bad port or host fails here, named, not as a bare "Invalid URL"
    } catch {
      throw new Error(`${source} is not a valid URL: "${shownRedisUrl(url)}" (host, port 1-65535, optional user:password@ and /db)`);
    }
    return url;
  }
  return embeddedRedisUrl();
}

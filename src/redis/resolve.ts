// Which Redis a command uses: --redis URL, else REDIS_URL, else an embedded redis-server that
// bos-fleet manages in its state directory (AOF on), kept running so runs persist between commands.
import { embeddedRedisUrl } from './embedded.js';

/**
 * A Redis URL fit to print: its password (redis://user:secret@host, a Redis with requirepass)
 * shown as ***. Works on URLs too broken to parse, as the messages about them need it most.
 */
export function shownRedisUrl(url: string): string {
  // The user ends at the first ':'; the password runs to the authority's last '@' (an unencoded '@'
  // in it is common).
  return url.replace(/^(rediss?:\/\/[^/:@]*:)[^/]*@/, '$1***@');
}

export async function resolveRedisUrl(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const url = flag ?? env['REDIS_URL'];
  if (url) {
    const source = flag === undefined ? 'REDIS_URL' : '--redis';
    if (!/^rediss?:\/\//.test(url)) throw new Error(`${source} must look like redis://host:6379, got "${shownRedisUrl(url)}"`);
    try {
      new URL(url); // what ioredis parses it with: a bad port or host fails here, named, not as a bare "Invalid URL"
    } catch {
      throw new Error(`${source} is not a valid URL: "${shownRedisUrl(url)}" (host, port 1-65535, optional user:password@ and /db)`);
    }
    return url;
  }
  return embeddedRedisUrl();
}

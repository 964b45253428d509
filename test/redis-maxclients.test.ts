// A Redis at its maxclients accepts a connection and closes it at once: ioredis saw only the close, so a
// command said "cannot connect … Connection is closed" with Redis running, and a worker whose consumers'
// connections never opened took no job without a word. Both now say that Redis is full, and what to do.
import { rmSync } from 'node:fs';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { greetingRefusal } from '../src/redis/maxclients.js';
import { runCli, spawnCli, writeFleetFiles } from './helpers/cli.js';
import { withOwnRedis } from './helpers/own-redis.js';
import { uniquePrefix } from './helpers/redis.js';
import { until } from './helpers/until.js';

describe('a Redis at its maxclients', () => {
  it('a command says Redis refuses new clients, and a worker whose connections cannot open says so while it waits', async () => {
    const files = writeFleetFiles('id,host\nm1,127.38.2.1\n');
    try {
      await withOwnRedis('maxclients', async ({ redis, server, started }) => {
        const connected = async () => Number(/connected_clients:(\d+)/.exec(await redis.info('clients'))?.[1]);
        // Room for a worker's first connections, not for its consumers'.
        await redis.config('SET', 'maxclients', String((await connected()) + 3));
        const worker = spawnCli(['worker', '--redis', server.url, '--prefix', uniquePrefix('maxclients'), '--credentials', files.credentials, '--concurrency', '50']);
        started.push(worker);
        await until(async () => worker.output().stderr.includes('worker: Redis refuses new connections: it is at its maxclients ('), 20_000, 50);
        expect(worker.output().stderr).toMatch(/at its maxclients \(\d+ of \d+ clients connected\), so some of this worker's connections cannot open and their consumers take no job until they do: raise its maxclients \(CONFIG SET maxclients N/);
        // Full: a command's own connection is refused, and it says why rather than "Connection is closed".
        await until(async () => (await connected()) >= Number(((await redis.config('GET', 'maxclients')) as string[])[1]), 10_000, 50);
        const runs = await runCli(['runs', '--redis', server.url], {}, 20_000);
        expect(runs.code).toBe(1);
        expect(runs.stderr).toContain(`bos-fleet: cannot connect to Redis at ${server.url}: it refuses new clients (ERR max number of clients reached): raise its maxclients`);
        worker.kill('SIGKILL');
        await redis.config('SET', 'maxclients', '10000');
      });
    } finally {
      rmSync(files.dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('its refusal is read from a connection that sends nothing; a server that says nothing is not taken for one', async () => {
    const say = (text: string) =>
      new Promise<net.Server>((resolve) => {
        const s = net.createServer((c) => (text ? c.end(text) : undefined));
        s.listen(0, '127.0.0.1', () => resolve(s));
      });
    const full = await say('-ERR max number of clients reached\r\n');
    const quiet = await say('');
    try {
      expect(await greetingRefusal('127.0.0.1', (full.address() as net.AddressInfo).port)).toBe('ERR max number of clients reached');
      expect(await greetingRefusal('127.0.0.1', (quiet.address() as net.AddressInfo).port, 200)).toBeUndefined();
    } finally {
      full.close();
      quiet.close();
      quiet.unref();
    }
  });
});

// `bos-fleet audit`: the append-only log of rollouts, rollbacks, aborts and schedule changes.
import type { Command } from 'commander';
import { DEFAULT_PREFIX } from '../fleet/keys.js';
import { readAudit } from '../rollout/audit.js';
import { connectRedis } from './connect-redis.js';
import { positiveInt, prefixOption } from './parse.js';
import { columns, printable } from './render.js';

export function registerAudit(program: Command): void {
  program
    .command('audit')
    .description('show the audit log (append-only: the CLI never edits or deletes it)')
    .option('--redis <url>', 'Redis URL (default: REDIS_URL, else the embedded redis-server)')
    .option('--prefix <prefix>', 'Redis key prefix', prefixOption, DEFAULT_PREFIX)
    .option('--limit <n>', 'most recent entries', positiveInt('--limit'), 200)
    .option('--subject <id>', 'only entries of this rollout or schedule (a schedule id also finds its rollouts: their ids start with it)')
    .option('--json', 'print JSON')
    .action(async (opts: { redis?: string; prefix: string; limit: number; subject?: string; json?: boolean }) => {
      const { redis } = await connectRedis(opts.redis);
      try {
        const entries = await readAudit(redis, opts.prefix, opts.limit, opts.subject);
        if (opts.json) return console.log(JSON.stringify(entries, null, 2));
        if (entries.length === 0) return console.log(opts.subject ? `no audit entries of ${opts.subject}` : 'audit log is empty');
        const rows = entries.map((e) => [e.at, printable(e.actor), e.action, `${e.subject}${e.targetDigest ? ` targets:${e.targetDigest.slice(0, 12)}` : ''}${e.details ? ` ${JSON.stringify(e.details)}` : ''}`]);
        for (const line of columns(rows)) console.log(line);
      } finally {
        redis.disconnect();
      }
    });
}

// A worker's errors it cannot act on arrive once per job; each kind is printed once per interval.
import { describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import { errorKind, rateLimitedLog, reportRedisOutages, workerErrorText } from '../src/workers/error-log.js';
import { redisRefusalAdvice } from '../src/redis/durability.js';

describe('rate-limited error log', () => {
  it('prints a kind once, then at most every interval with how many were held back', () => {
    let t = 0;
    const lines: string[] = [];
    const log = rateLimitedLog((l) => lines.push(l), 10_000, () => t);
    const misconf = (hash: string, line: number) => `MISCONF Errors writing to the AOF file: No space left on device script: ${hash.repeat(40)}, on @user_script:${line}.`;
    for (let i = 0; i < 2_000; i++) {
      log(misconf(i % 2 ? 'a' : 'b', 200 + (i % 3)));
      t += 10;
    }
    log('OOM command not allowed when used memory > \'maxmemory\'.');
    expect(lines).toEqual([
      'MISCONF Errors writing to the AOF file: No space left on device',
      'MISCONF Errors writing to the AOF file: No space left on device (999 more like it in the last 10 s)',
      "OOM command not allowed when used memory > 'maxmemory'.",
    ]);
  });

  it("BullMQ's per-job lock errors after a Redis stall are one kind each, printed with the first job they name", () => {
    let t = 0;
    const lines: string[] = [];
    const log = rateLimitedLog((l) => lines.push(l), 10_000, () => t);
    const ids = Array.from({ length: 50 }, (_, i) => `run-20261201T113203Z-d7902b.miner-${String(i).padStart(5, '0')}`);
    for (const id of ids) log(`could not renew lock for job ${id}`);
    for (const id of ids) log(`Missing lock for job ${id}. moveToFinished`);
    for (const id of ids) log(`Missing lock for job ${id}. moveToDelayed`);
    t += 10_001;
    log(`could not renew lock for job ${ids[7]}`);
    expect(lines).toEqual([
      `could not renew lock for job ${ids[0]}`,
      `Missing lock for job ${ids[0]}. moveToFinished`,
      `Missing lock for job ${ids[0]}. moveToDelayed`,
      `could not renew lock for job ${ids[7]} (49 more like it in the last 10 s)`,
    ]);
  });

  it('says Redis is unreachable once per interval, and once, for all its connections, when it is back', () => {
    let t = 0;
    const lines: string[] = [];
    const a = new EventEmitter();
    const b = new EventEmitter();
    reportRedisOutages('worker', 'no job is lost while it is down', [a, b], 10_000, () => t, (l) => lines.push(l));
    a.emit('ready'); // the first connect is not a return
    for (let i = 0; i < 30; i++) {
      (i % 2 ? a : b).emit('error', new Error('connect ECONNREFUSED 127.0.0.1:6391'));
      t += 1_000;
    }
    a.emit('ready');
    b.emit('ready');
    t += 60_000;
    b.emit('error', new Error('connect ECONNREFUSED 127.0.0.1:6391'));
    t += 2_000;
    b.emit('ready');
    expect(lines).toEqual([
      'worker: Redis unreachable (connect ECONNREFUSED 127.0.0.1:6391); retrying — no job is lost while it is down',
      'worker: Redis unreachable (connect ECONNREFUSED 127.0.0.1:6391); retrying — no job is lost while it is down',
      'worker: Redis unreachable (connect ECONNREFUSED 127.0.0.1:6391); retrying — no job is lost while it is down',
      'worker: Redis reachable again (unreachable for 30 s)',
      'worker: Redis unreachable (connect ECONNREFUSED 127.0.0.1:6391); retrying — no job is lost while it is down',
      'worker: Redis reachable again (unreachable for 2 s)',
    ]);
  });

  it('a Redis whose password was set or changed since start is said as such, with the fix', () => {
    const lines: string[] = [];
    const a = new EventEmitter();
    reportRedisOutages('worker', 'no job is lost while it is down', [a], 10_000, () => 0, (l) => lines.push(l));
    a.emit('error', Object.assign(new Error('NOAUTH Authentication required.'), { name: 'ReplyError' }));
    expect(lines).toEqual([
      'worker: Redis refuses this process\'s login (NOAUTH Authentication required.): its password was set or changed since this process started, which reads --redis / REDIS_URL once: restart it with the new one (redis://:PASSWORD@host:port); retrying meanwhile — no job is lost while it is down',
    ]);
  });

  it("a worker's dropped Redis connection is left to the outage report, whichever way it dropped; Redis's refusals and lost locks are logged", () => {
    // Seen when Redis was SIGKILLed under a busy worker: "worker (jobs): write EPIPE" before "Redis unreachable (write EPIPE)".
    const errno = (message: string, code: string) => Object.assign(new Error(message), { code });
    for (const dropped of [errno('write EPIPE', 'EPIPE'), errno('connect ECONNREFUSED 127.0.0.1:6391', 'ECONNREFUSED'), errno('read ECONNRESET', 'ECONNRESET'), new Error('Connection is closed.'), new Error("Stream isn't writeable and enableOfflineQueue options is false")]) {
      expect(workerErrorText(dropped)).toBeUndefined();
    }
    const refused = Object.assign(new Error('MISCONF Errors writing to the AOF file: No space left on device'), { name: 'ReplyError' });
    expect(workerErrorText(refused)).toBe(refused.message);
    expect(workerErrorText(new Error('Missing lock for job run-1.miner-00001. moveToFinished'))).toMatch(/^Missing lock for job run-1\.miner-00001\. moveToFinished \(its lock may have run out while Redis, or this worker, did not answer.*; or the connection dropped after Redis had run the command, and ioredis sent it again/);
    expect(workerErrorText(new Error('could not renew lock for job run-1.miner-00001'))).toMatch(/^could not renew lock for job run-1\.miner-00001 \(its lock may have run out .*written once\)$/);
  });

  it('a kind is the message without the script hash and line', () => {
    expect(errorKind('OOM command not allowed. script: 5ab432e88830d573e2fa33392ffbd4ad25a9b100, on @user_script:589.')).toBe('OOM command not allowed.');
  });

  it('says what to do about each way Redis refuses a write', () => {
    expect(redisRefusalAdvice("OOM command not allowed when used memory > 'maxmemory'.")).toMatch(/memory/);
    expect(redisRefusalAdvice('MISCONF Errors writing to the AOF file: No space left on device')).toMatch(/disk is full or not writable/);
    expect(redisRefusalAdvice("READONLY You can't write against a read only replica.")).toMatch(/read-only replica/);
  });
});

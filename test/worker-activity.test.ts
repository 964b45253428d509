// The worker's log line: outcomes written by code, and failed attempts that will run again.
import { EventEmitter } from 'node:events';
import { UnrecoverableError, type Job, type Worker } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { activityText, watchActivity } from '../src/workers/activity.js';

const job = (attemptsMade: number, attempts: number) => ({ attemptsMade, opts: { attempts } }) as unknown as Job;

describe('worker activity', () => {
  it('counts each outcome once, by code, and retries apart', () => {
    // The consumers' events as BullMQ emits them (the counting is ours; the events are tested end to end).
    const a = new EventEmitter();
    const b = new EventEmitter();
    const activity = watchActivity([a, b] as unknown as Worker[]);
    a.emit('completed', job(1, 3), { code: 'OK' });
    b.emit('completed', job(1, 3), { code: 'OK' });
    a.emit('completed', job(2, 3), { code: 'OK', skipped: true }); // its outcome was written before
    b.emit('failed', job(1, 3), new UnrecoverableError('MINER_AUTH_FAILED: login refused'));
    a.emit('failed', job(1, 3), new Error('MINER_TIMEOUT: deadline exceeded [2 in-call attempts, 800 ms]'));
    a.emit('failed', job(3, 3), new Error('MINER_TIMEOUT: deadline exceeded [2 in-call attempts, 800 ms]'));
    b.emit('failed', undefined, new Error('something else'));
    const taken = activity.take();
    expect(taken).toEqual({ outcomes: { OK: 2, MINER_AUTH_FAILED: 1, MINER_TIMEOUT: 1, INTERNAL: 1 }, retries: 1, handedOn: 0 });
    expect(activityText(taken)).toBe('5 outcomes (OK 2, MINER_AUTH_FAILED 1, MINER_TIMEOUT 1, INTERNAL 1), 1 attempt to run again');
    expect(activity.take()).toEqual({ outcomes: {}, retries: 0, handedOn: 0 });
    a.emit('completed', job(1, 3), { code: 'OK' });
    // A consumer started later (a hand-on queue's) counts once attached; a job handed on is no outcome.
    const c = new EventEmitter();
    activity.attach(c as unknown as Worker);
    c.emit('completed', job(0, 3), { code: 'OK' });
    c.emit('completed', job(0, 3), { code: 'HANDED_ON', skipped: true });
    expect(activity.total()).toEqual({ outcomes: { OK: 4, MINER_AUTH_FAILED: 1, MINER_TIMEOUT: 1, INTERNAL: 1 }, retries: 1, handedOn: 1 });
    expect(activityText({ outcomes: { OK: 12_345 }, retries: 0, handedOn: 0 })).toBe('12,345 outcomes (OK 12,345)');
    expect(activityText({ outcomes: { OK: 3 }, retries: 0, handedOn: 2 })).toBe('3 outcomes (OK 3), 2 handed on to workers that can do them');
  });
});

// Per-test isolation on the shared test Redis: a unique BullMQ prefix and key namespace per test.
import { randomUUID } from 'node:crypto';
import { inject } from 'vitest';

export function redisUrl(): string {
  return inject('redisUrl');
}

export function uniquePrefix(name = 'test'): string {
  return `t-${name}-${randomUUID().slice(0, 8)}`;
}

// The job payload: plain data, validated on both sides of Redis. It names a credentials profile,
// never a password.
import { UnrecoverableError, type Job } from 'bullmq';
import { z } from 'zod';

export const OPERATIONS = ['poll', 'power-target', 'hashrate-target', 'pools', 'pause', 'resume', 'reboot', 'locate-on', 'locate-off'] as const;
export type Operation = (typeof OPERATIONS)[number];
export type MutationOperation = Exclude<Operation, 'poll'>;

/** A MAC address as `aa:bb:cc:dd:ee:ff` (lower case, colons); undefined when `text` is none. */
export function normalizeMac(text: string): string | undefined {
  const hex = text.trim().toLowerCase();
  if (!/^([0-9a-f]{2}([:-]?)){5}[0-9a-f]{2}$/.test(hex)) return undefined;
  return hex.replace(/[:-]/g, '').match(/../g)!.join(':');
}

export const minerTargetSchema = z.object({
  minerId: z.string().min(1),
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535),
  site: z.string(),
  tags: z.array(z.string()),
  credentials: z.string().min(1),
  /** The miner's MAC address, when the inventory gives it: a job first checks the machine at `host` is this miner. */
  mac: z.string().regex(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/).optional(),
});

export type JobTarget = z.infer<typeof minerTargetSchema>;

/**
 * A run's per-attempt deadline, ms: below 100 every miner would time out (a typo for seconds),
 * above 10 minutes a dead miner holds a worker's slot longer than anyone waits (and past 24.8 days
 * Node's timers overflow and fire at once).
 */
export const MIN_TIMEOUT_MS = 100;
export const MAX_TIMEOUT_MS = 600_000;

export const jobDataSchema = z.object({
  runId: z.string().min(1),
  operation: z.enum(OPERATIONS),
  target: minerTargetSchema,
  /** Per-attempt deadline requested for this run (ms); core defaults when absent. */
  timeoutMs: z.number().int().min(MIN_TIMEOUT_MS).max(MAX_TIMEOUT_MS).optional(),
  /** The run asked for TLS to this miner's site: a worker without TLS material for it never connects in plaintext. */
  tls: z.boolean().optional(),
  params: z.record(z.string(), z.unknown()).default({}),
  /**
   * Set on a job handed on to another queue (workers/hand-on.ts): the attempts it had used there, and
   * its last failure, so that its outcome counts every attempt and its job-level retries do not restart;
   * and the queue it was handed on from (a copy is told apart from the job it was copied from).
   */
  prior: z.object({ attempts: z.number().int().min(0), failedReason: z.string().optional(), from: z.string().optional() }).optional(),
});

export type JobData = z.infer<typeof jobDataSchema>;

/**
 * Whether BullMQ is done with a job that failed (no attempt left, or unrecoverable). As BullMQ itself
 * tells: by class, or by name for an error from another copy of BullMQ (a bundle may rename the class,
 * and its `name` with it, which is set from the constructor's).
 */
export function isFinalFailure(job: Pick<Job, 'attemptsMade' | 'opts'> | undefined, err: Error): boolean {
  return err instanceof UnrecoverableError || err.name === 'UnrecoverableError' || !job || job.attemptsMade >= (job.opts.attempts ?? 1);
}

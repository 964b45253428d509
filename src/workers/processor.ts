// The BullMQ processor: validates the job, skips miners that already have an outcome (a stalled job
// running again), runs the task, and decides from the typed code whether BullMQ should retry.
import { UnrecoverableError, type Job } from 'bullmq';
import { CODE_INFO, isErrorCode, type ErrorCode } from '../core/error-codes.js';
import { jobDataSchema, type JobData } from '../fleet/job.js';
import type { Outcome } from '../fleet/outcome.js';
import type { RunStore } from '../fleet/run-store.js';
import type { Executor } from './executor.js';
import type { TaskResult } from './task.js';

export interface ProcessorDeps {
  store: RunStore;
  executor: Executor;
}

function outcomeOf(data: JobData, result: TaskResult, jobAttempts: number): Outcome {
  const code = result.ok ? 'OK' : isErrorCode(result.code) ? result.code : 'INTERNAL';
  return {
    runId: data.runId,
    minerId: data.target.minerId,
    host: data.target.host,
    port: data.target.port,
    operation: data.operation,
    status: result.ok ? 'ok' : 'failed',
    code,
    attempts: result.attempts,
    jobAttempts,
    durationMs: result.durationMs,
    finishedAt: new Date().toISOString(),
    transport: result.transport,
    ...(result.error ? { error: { message: result.error.message, suggestion: result.error.suggestion } } : {}),
    ...(result.data !== undefined ? { data: result.data } : {}),
  };
}

/**
 * When the last job attempt was skipped by an open breaker, the previous attempt's real failure
 * (kept by BullMQ as failedReason "CODE: message") is the truthful outcome.
 */
function withEarlierCause(result: TaskResult, failedReason: string | undefined): TaskResult {
  if (result.code !== 'CIRCUIT_OPEN' || !result.error || !failedReason) return result;
  const m = /^([A-Z_]+): (.*)$/s.exec(failedReason);
  const code = m?.[1];
  if (!code || !isErrorCode(code) || code === 'CIRCUIT_OPEN') return result;
  return {
    ...result,
    code,
    error: { ...result.error, code, message: `${m[2]} (next attempt skipped: circuit open)`, retryable: CODE_INFO[code].retryable, suggestion: CODE_INFO[code].suggestion },
  };
}

function failedTask(code: ErrorCode, message: string): TaskResult {
  return { ok: false, code, attempts: 0, durationMs: 0, transport: 'plaintext', error: { name: 'FleetError', code, message, retryable: CODE_INFO[code].retryable, suggestion: CODE_INFO[code].suggestion, context: {} } };
}

export function createProcessor({ store, executor }: ProcessorDeps) {
  return async (job: Job): Promise<{ code: string; skipped?: boolean }> => {
    const parsed = jobDataSchema.safeParse(job.data);
    const jobAttempts = job.attemptsMade + 1;
    if (!parsed.success) {
      const raw = job.data as Partial<JobData> | undefined;
      const issue = parsed.error.issues[0];
      const message = `job ${job.id}: field ${issue?.path.join('.') ?? '?'}: ${issue?.message ?? 'invalid'}`;
      if (raw?.runId && raw.target?.minerId) {
        const partial = { runId: raw.runId, operation: String(raw.operation ?? 'unknown'), target: { ...raw.target, host: String(raw.target.host ?? ''), port: Number(raw.target.port ?? 0) } } as JobData;
        await store.writeOutcome(outcomeOf(partial, failedTask('INVALID_JOB', message), jobAttempts));
      }
      throw new UnrecoverableError(`INVALID_JOB: ${message}`);
    }
    const data = parsed.data;
    // At-least-once delivery: a job delivered again (after a stall or a failed attempt) that already
    // has an outcome never touches the miner again. A first delivery cannot have one: skip the read.
    if (job.attemptsMade > 0 || job.stalledCounter > 0) {
      const existing = await store.getOutcome(data.runId, data.target.minerId);
      if (existing) return { code: existing.code, skipped: true };
    }

    const result = await executor.run({ job: data });
    const maxAttempts = job.opts.attempts ?? 1;
    const retryable = !result.ok && (result.error?.retryable ?? false);
    if (retryable && jobAttempts < maxAttempts) {
      // BullMQ re-runs the job after its backoff; only the final attempt writes the outcome.
      throw new Error(`${result.code}: ${result.error?.message ?? ''}`);
    }
    const final = withEarlierCause(result, job.failedReason);
    await store.writeOutcome(outcomeOf(data, final, jobAttempts));
    if (!result.ok) throw new UnrecoverableError(`${result.code}: ${result.error?.message ?? ''}`);
    return { code: result.code };
  };
}

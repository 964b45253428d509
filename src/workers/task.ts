// One job's work on the miner, as plain data in and out: runs in a Piscina thread or inline.
// Each thread has its own FleetCore (channels, sessions); breaker state is the shared table.
import { FleetCore } from '../core/fleet-core.js';
import { SharedBreakerStore, type SharedBreakerTable } from '../core/breaker-table.js';
import type { ErrorCode } from '../core/error-codes.js';
import { FleetError, type PlainFleetError } from '../core/fleet-error.js';
import type { CoreOptionsInput } from '../core/options.js';
import type { PoolStats } from '../core/pool.js';
import { siteTlsLookup, type TlsProfile } from '../core/tls.js';
import type { JobData } from '../fleet/job.js';
import { loginOf, type CredentialProfile } from '../fleet/credentials.js';
import { pollMiner } from './ops/poll.js';
import { assertSameMiner } from './ops/identity.js';
import { missingFor } from './registry.js';
import { applyMutation, mutateMiner, prepareMutation } from './ops/mutate.js';
import { mutationSpecSchema } from './ops/mutation-spec.js';

/** Plain data handed to every thread in workerData. */
export interface TaskRunnerConfig {
  coreOptions: CoreOptionsInput;
  breakerTable: SharedBreakerTable;
  credentials: [string, CredentialProfile][];
  /** TLS profile per site ('*' for every site); absent = plaintext. */
  tlsBySite?: Record<string, TlsProfile>;
  /** How long a mutation waits for a rebooted miner to come back. */
  rebootWaitMs?: number;
}

export interface TaskInput {
  job: JobData;
  /**
   * A change job runs in two tasks: 'prepare' (read, validate; sends no write; data is a
   * PreparedChange) and 'apply' (write, read back; data is MutationData), the processor journaling
   * `before` between them. Without a phase, a change runs whole (no journal).
   */
  phase?: 'prepare' | 'apply';
  /** For 'apply': the state from before the change, as journaled. */
  before?: unknown;
  /** How far Redis's clock is ahead of this host's (ms): a reboot compares boot times on it. */
  clockOffsetMs?: number;
  /** For 'apply': no write is sent after this time (ms since the epoch): the job's lock may be gone by then (CallOptions.writeNotAfterMs). */
  writeNotAfterMs?: number;
}

export interface TaskResult {
  ok: boolean;
  code: string;
  attempts: number;
  durationMs: number;
  transport: 'plaintext' | 'tls';
  data?: unknown;
  error?: PlainFleetError;
}

/** A failed task result made here, not by the core (nothing sent to the miner). */
export function failedTask(code: ErrorCode, message: string): TaskResult {
  return { ok: false, code, attempts: 0, durationMs: 0, transport: 'plaintext', error: new FleetError(code, message).toPlain() };
}

/** `poolStats`: this thread's connection pool (for diagnostics and tests). */
export type TaskRunner = ((input: TaskInput) => Promise<TaskResult>) & { close(): void; poolStats(): PoolStats };

export function createTaskRunner(config: TaskRunnerConfig): TaskRunner {
  const core = new FleetCore(config.coreOptions, { breakerStore: new SharedBreakerStore(config.breakerTable) });
  const credentials = new Map(config.credentials);
  const tls = siteTlsLookup(config.tlsBySite);
  const caps = { profiles: [...credentials.keys()], tlsSites: tls.sites };

  const run = async ({ job, phase, before, clockOffsetMs = 0, writeNotAfterMs }: TaskInput): Promise<TaskResult> => {
    const started = Date.now();
    const t = job.target;
    const siteTls = tls.forSite(t.site);
    const transport = siteTls ? 'tls' : 'plaintext';
    // The processor hands such jobs to a worker that can (registry.ts); here is the last line: no
    // password, or a run that asked for TLS where this worker has none, never reaches a miner.
    const missing = missingFor(job, caps);
    const creds = loginOf(credentials, t.credentials);
    if (missing || !creds) {
      // A profile with no username here (a pool password only, in this worker's file) logs in nowhere.
      const what = missing ?? `username in credentials profile "${t.credentials}" (it holds a pool password only: add its "username" to this worker's --credentials file)`;
      const error = new FleetError('INVALID_JOB', `this worker has no ${what}`, { minerId: t.minerId, host: t.host, operation: job.operation, attempts: 0 });
      return { ok: false, code: error.code, attempts: 0, durationMs: 0, transport, error: error.toPlain() };
    }
    const miner = core.miner({ id: t.minerId, host: t.host, port: t.port, credentials: creds, ...(siteTls ? { tls: siteTls } : {}) });
    const callOpts = { ...(job.timeoutMs ? { timeoutMs: job.timeoutMs } : {}), ...(writeNotAfterMs !== undefined ? { writeNotAfterMs } : {}) };
    const release = miner.holdChannel(); // the job's calls share one connection
    try {
      let data: unknown;
      if (job.operation === 'poll') {
        const snapshot = await pollMiner(miner, callOpts);
        assertSameMiner(t, snapshot.macAddress); // another machine's data is never reported as this miner's
        data = snapshot;
      } else {
        const spec = mutationSpecSchema.safeParse(job.params['mutation']);
        if (!spec.success) {
          throw new FleetError('INVALID_JOB', `params.mutation: ${spec.error.issues[0]?.message ?? 'invalid'}`, { minerId: t.minerId, attempts: 0 });
        }
        // Before anything is read as `before` or written: the machine answering is this miner. Checked
        // when the change is read (its apply follows at once, on the same connection); a reboot's own
        // reads check it, before the reboot and when the miner is back.
        if (t.mac && phase !== 'apply' && spec.data.kind !== 'reboot') assertSameMiner(t, (await miner.getMinerDetails(callOpts)).macAddress);
        const ctx = { target: t, credentials, dryRun: job.params['dryRun'] === true, callOpts, rebootWaitMs: config.rebootWaitMs ?? 300_000, sharedNowMs: () => Date.now() + clockOffsetMs };
        if (phase === 'prepare') data = await prepareMutation(miner, spec.data, ctx);
        else if (phase === 'apply') data = await applyMutation(miner, spec.data, ctx, before);
        else data = await mutateMiner(miner, spec.data, ctx);
      }
      return { ok: true, code: 'OK', attempts: Math.max(1, miner.stats.maxAttempts), durationMs: Date.now() - started, transport, data };
    } catch (err) {
      const e = FleetError.from(err, { minerId: t.minerId, host: t.host, port: t.port });
      return { ok: false, code: e.code, attempts: e.context.attempts ?? miner.stats.maxAttempts, durationMs: Date.now() - started, transport, error: e.toPlain() };
    } finally {
      release();
    }
  };
  return Object.assign(run, { close: () => core.close(), poolStats: () => core.pool.stats() });
}

// A mutation job on one miner: read `before` → validate (constraints, firmware) → skip if already so →
// absolute write (SAVE_AND_APPLY) → read back and compare. An interrupted write is settled by the
// read-back, never by a blind retry. Safe to run again after a stall: it finds the change made.
import { FleetError } from '../../core/fleet-error.js';
import type { CallOptions, MinerClient } from '../../core/miner-client.js';
import type { Credentials } from '../../core/sessions.js';
import type { JobTarget } from '../../fleet/job.js';
import type { MutationSpec } from './mutation-spec.js';
import { mutationKind, type MutationKind } from './mutation-kinds.js';

export interface MutationData {
  change: 'applied' | 'unchanged' | 'would-apply';
  before: unknown;
  after: unknown;
  verified: boolean;
}

export interface MutateContext {
  target: JobTarget;
  credentials: Map<string, Credentials>;
  dryRun: boolean;
  callOpts: CallOptions;
  /** How long to wait for a rebooted miner to come back (ms). */
  rebootWaitMs: number;
}

export async function mutateMiner(miner: MinerClient, spec: MutationSpec, ctx: MutateContext): Promise<MutationData> {
  const kind: MutationKind<unknown> = mutationKind(spec, ctx);
  const before = await kind.read(miner);
  const desired = kind.desired(before);
  if (kind.equal(before, desired)) return { change: 'unchanged', before, after: before, verified: true };
  await kind.validate(miner, before);
  if (ctx.dryRun) return { change: 'would-apply', before, after: desired, verified: false };
  try {
    await kind.write(miner);
  } catch (err) {
    const e = FleetError.from(err);
    if (e.code !== 'OUTCOME_UNKNOWN') throw e;
    // The write may or may not have landed: the miner's state says which.
    let after: unknown;
    try {
      after = await kind.settle(miner);
    } catch {
      throw e;
    }
    if (kind.equal(after, desired)) return { change: 'applied', before, after, verified: true };
    // Provably not applied: the original failure stands (and is retryable at job level).
    throw new FleetError(e.context.grpcCode === 4 ? 'MINER_TIMEOUT' : 'CONNECTION_LOST', `${e.message}; read-back shows the change was not applied`, e.context);
  }
  const after = await kind.settle(miner);
  if (!kind.equal(after, desired)) {
    throw new FleetError('VERIFY_MISMATCH', `wrote ${JSON.stringify(desired)} but the miner reads back ${JSON.stringify(after)}`, {
      minerId: ctx.target.minerId,
      host: ctx.target.host,
      mutation: true,
    });
  }
  return { change: 'applied', before, after, verified: true };
}

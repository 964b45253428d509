// A mutation job on one miner, in two steps: prepare (read `before` → skip if already so → validate
// constraints and firmware) and apply (absolute write, SAVE_AND_APPLY → read back and compare). The
// worker journals `before` in Redis between the two, so a job run again after its worker died
// mid-change still reports the change and the state from before it. An interrupted write is settled
// by the read-back, never by a blind retry. Safe to run again after a stall: it finds the change made.
import { FleetError, OUTCOME_UNKNOWN_NOTE } from '../../core/fleet-error.js';
import type { CallOptions, MinerClient } from '../../core/miner-client.js';
import type { CredentialProfile } from '../../fleet/credentials.js';
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
  credentials: ReadonlyMap<string, CredentialProfile>;
  dryRun: boolean;
  callOpts: CallOptions;
  /** How long to wait for a rebooted miner to come back (ms). */
  rebootWaitMs: number;
  /**
   * How long a miner that answers every read with its old boot time (it never went away) is given to
   * start its reboot before the reboot is taken as not done (ms; default 60 s).
   */
  rebootStartMs?: number;
  /** Now on Redis's clock (a reboot's request time is on it): this host's clock plus its offset. */
  sharedNowMs: () => number;
}

/** What a change finds on the miner before writing anything (validated when there is something to write). */
export interface PreparedChange {
  before: unknown;
  desired: unknown;
  /** Already so: nothing to write. */
  equal: boolean;
}

/** Reads the miner's state and, when it differs from the desired one, validates the change. Sends no write. */
export async function prepareMutation(miner: MinerClient, spec: MutationSpec, ctx: MutateContext): Promise<PreparedChange> {
  const kind: MutationKind<unknown> = mutationKind(spec, ctx);
  const before = await kind.read(miner);
  const desired = kind.desired(before);
  if (kind.equal(before, desired)) return { before, desired, equal: true };
  await kind.validate(miner, before);
  return { before, desired, equal: false };
}

/** The result of a prepared change that writes nothing: already so, or a dry run. */
export function unwrittenResult(p: PreparedChange, dryRun: boolean): MutationData | undefined {
  if (p.equal) return { change: 'unchanged', before: p.before, after: p.before, verified: true };
  if (dryRun) return { change: 'would-apply', before: p.before, after: p.desired, verified: false };
  return undefined;
}

/**
 * Writes a prepared change (absolute write, SAVE_AND_APPLY) and reads it back. `before` is what the
 * outcome reports as the state before the change: the journaled one when an earlier attempt of the
 * job recorded it.
 */
export async function applyMutation(miner: MinerClient, spec: MutationSpec, ctx: MutateContext, before: unknown): Promise<MutationData> {
  const kind: MutationKind<unknown> = mutationKind(spec, ctx);
  const desired = kind.desired(before);
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
    throw new FleetError(e.context.grpcCode === 4 ? 'MINER_TIMEOUT' : 'CONNECTION_LOST', `${e.message.replace(OUTCOME_UNKNOWN_NOTE, '')}; read-back shows the change was not applied`, e.context);
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

/** Prepare and apply in one go, with no journal (the library entry point; workers journal in between). */
export async function mutateMiner(miner: MinerClient, spec: MutationSpec, ctx: MutateContext): Promise<MutationData> {
  const prepared = await prepareMutation(miner, spec, ctx);
  return unwrittenResult(prepared, ctx.dryRun) ?? (await applyMutation(miner, spec, ctx, prepared.before));
}

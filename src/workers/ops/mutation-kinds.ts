// Each mutation kind: how to read its state, the desired state, validation before any write, the
// absolute write, and the read-back. States are plain data (they become `before` / `after`).
import { FleetError } from '../../core/fleet-error.js';
import type { MinerClient } from '../../core/miner-client.js';
import type * as T from '../../core/types.js';
import type { MutateContext } from './mutate.js';
import { assertSameMiner } from './identity.js';
import type { MutationSpec, PoolGroupSpec } from './mutation-spec.js';

/** How long a miner that never goes away after Reboot is given to start rebooting (see MutateContext.rebootStartMs). */
const REBOOT_START_MS = 60_000;

export interface MutationKind<S> {
  read(m: MinerClient): Promise<S>;
  desired(before: S): S;
  equal(a: S, b: S): boolean;
  /** Throws INVALID_REQUEST / UNSUPPORTED_BY_FIRMWARE / INVALID_JOB, having sent no write. */
  validate(m: MinerClient, before: S): Promise<void>;
  write(m: MinerClient): Promise<void>;
  /** The state after the write (for a reboot: once the miner is back). */
  settle(m: MinerClient): Promise<S>;
}

const invalid = (ctx: MutateContext, message: string) =>
  new FleetError('INVALID_REQUEST', message, { minerId: ctx.target.minerId, host: ctx.target.host, mutation: true, mayHaveReachedMiner: false, attempts: 0 });

function rangeCheck(ctx: MutateContext, what: string, unit: string, value: number, min: number | undefined, max: number | undefined): void {
  if (min === undefined || max === undefined) return;
  if (value < min || value > max) throw invalid(ctx, `${what} ${value} ${unit} is outside this miner's allowed range [${min}, ${max}] ${unit}; nothing was sent`);
}

interface PoolState {
  groups: { name: string; quota: number | null; fixedShareRatio: number | null; pools: { url: string; user: string; enabled: boolean }[] }[];
}

function applyTemplate(text: string, ctx: MutateContext): string {
  return text.replace(/\{(minerId|host|site)\}/g, (_, k: 'minerId' | 'host' | 'site') => ctx.target[k]);
}

function poolState(read: T.PoolGroupReadSide[]): PoolState {
  return {
    groups: read.map((g) => ({
      name: g.name,
      quota: g.fixedShareRatio ? null : (g.quota?.value ?? 1),
      fixedShareRatio: g.fixedShareRatio?.value ?? null,
      pools: g.pools.map((p) => ({ url: p.url, user: p.user, enabled: p.enabled })),
    })),
  };
}

function desiredPools(groups: PoolGroupSpec[], ctx: MutateContext): PoolState {
  return {
    groups: groups.map((g) => ({
      name: g.name,
      quota: g.fixedShareRatio !== undefined ? null : (g.quota ?? 1),
      fixedShareRatio: g.fixedShareRatio ?? null,
      pools: g.pools.map((p) => ({ url: applyTemplate(p.url, ctx), user: applyTemplate(p.user, ctx), enabled: p.enabled })),
    })),
  };
}

const sameJson = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
const statusOf = (d: T.MinerDetails) => d.status.replace('MINER_STATUS_', '');

/** The tuner's target in each mode; only the mode it runs in has one (`null` for the other). */
function tunerTargets(ts: T.TunerState): { powerTargetWatts: number | null; hashrateTargetThs: number | null } {
  return {
    powerTargetWatts: ts.powerTargetModeState?.currentTarget?.watt ?? null,
    hashrateTargetThs: ts.hashrateTargetModeState?.currentTarget?.terahashPerSecond ?? null,
  };
}

/**
 * An absolute tuner target (power or hashrate): state `{[key]: value | null}`, checked against the
 * model's range. A miner whose tuner runs in the other mode has `null` here, and its state also
 * holds the other mode's target (`{powerTargetWatts: null, hashrateTargetThs: 120}`): that is what a
 * rollback restores, as the tuner is one setting with two modes.
 */
function targetKind(
  ctx: MutateContext,
  t: {
    key: 'powerTargetWatts' | 'hashrateTargetThs';
    value: number;
    what: [name: string, unit: string];
    range: (m: MinerClient) => Promise<[number | undefined, number | undefined]>;
    write: (m: MinerClient) => Promise<unknown>;
  },
): MutationKind<unknown> {
  const other = t.key === 'powerTargetWatts' ? 'hashrateTargetThs' : 'powerTargetWatts';
  const read = async (m: MinerClient) => {
    const targets = tunerTargets(await m.getTunerState(ctx.callOpts));
    return targets[t.key] === null && targets[other] !== null ? { [t.key]: null, [other]: targets[other] } : { [t.key]: targets[t.key] };
  };
  return {
    read,
    desired: () => ({ [t.key]: t.value }),
    equal: sameJson,
    validate: async (m) => rangeCheck(ctx, t.what[0], t.what[1], t.value, ...(await t.range(m))),
    write: async (m) => void (await t.write(m)),
    settle: read,
  };
}

export function mutationKind(spec: MutationSpec, ctx: MutateContext): MutationKind<unknown> {
  const o = ctx.callOpts;
  switch (spec.kind) {
    case 'power-target':
      return targetKind(ctx, {
        key: 'powerTargetWatts',
        value: spec.watts,
        what: ['power target', 'W'],
        range: async (m) => {
          const c = (await m.getConstraints(o)).tunerConstraints?.powerTarget;
          return [c?.min?.watt, c?.max?.watt];
        },
        write: (m) => m.setPowerTarget(spec.watts, o),
      });
    case 'hashrate-target':
      return targetKind(ctx, {
        key: 'hashrateTargetThs',
        value: spec.terahashPerSecond,
        what: ['hashrate target', 'TH/s'],
        range: async (m) => {
          const c = (await m.getConstraints(o)).tunerConstraints?.hashrateTarget;
          return [c?.min?.terahashPerSecond, c?.max?.terahashPerSecond];
        },
        write: (m) => m.setHashrateTarget(spec.terahashPerSecond, o),
      });
    case 'pools': {
      const read = async (m: MinerClient) => poolState((await m.getPoolGroups(o)).poolGroups);
      return {
        read,
        desired: () => desiredPools(spec.groups, ctx),
        equal: sameJson,
        validate: async (m) => {
          if (!(await m.supports('SetPoolGroups', o))) {
            const v = await m.apiVersion(o);
            throw new FleetError('UNSUPPORTED_BY_FIRMWARE', `SetPoolGroups needs API 1.2.0, miner speaks ${v.major}.${v.minor}.${v.patch}; nothing was sent`, {
              minerId: ctx.target.minerId,
              host: ctx.target.host,
              mutation: true,
              mayHaveReachedMiner: false,
              attempts: 0,
            });
          }
          for (const g of spec.groups) {
            for (const p of g.pools) {
              if (p.passwordRef && !ctx.credentials.has(p.passwordRef)) {
                throw new FleetError('INVALID_JOB', `pool password reference "${p.passwordRef}" names no credentials profile known to this worker`, { minerId: ctx.target.minerId, attempts: 0 });
              }
              if (!/^stratum2?\+(tcp|ssl|tls):\/\//.test(p.url)) throw invalid(ctx, `pool url "${p.url}" must start with stratum+tcp://, stratum+ssl:// or stratum2+tcp://`);
            }
          }
        },
        write: async (m) => {
          const groups: T.PoolGroupConfiguration[] = spec.groups.map((g) => ({
            name: g.name,
            ...(g.fixedShareRatio !== undefined ? { fixedShareRatio: { value: g.fixedShareRatio } } : { quota: { value: g.quota ?? 1 } }),
            pools: g.pools.map((p) => ({
              url: applyTemplate(p.url, ctx),
              user: applyTemplate(p.user, ctx),
              enabled: p.enabled,
              ...(p.passwordRef ? { password: ctx.credentials.get(p.passwordRef)?.password ?? '' } : {}),
            })),
          }));
          await m.setPoolGroups(groups, o);
        },
        settle: read,
      } satisfies MutationKind<PoolState> as MutationKind<unknown>;
    }
    case 'pause':
    case 'resume': {
      const target = spec.kind === 'pause' ? 'PAUSED' : 'NORMAL';
      const read = async (m: MinerClient) => ({ minerStatus: statusOf(await m.getMinerDetails(o)) });
      return {
        read,
        desired: () => ({ minerStatus: target }),
        equal: sameJson,
        validate: async () => undefined,
        write: async (m) => void (spec.kind === 'pause' ? await m.pauseMining(o) : await m.resumeMining(o)),
        settle: read,
      } satisfies MutationKind<{ minerStatus: string }> as MutationKind<unknown>;
    }
    case 'locate': {
      const read = async (m: MinerClient) => ({ locateOn: (await m.getLocateDeviceStatus(o)).enabled });
      return {
        read,
        desired: () => ({ locateOn: spec.enable }),
        equal: sameJson,
        validate: async () => undefined,
        write: async (m) => void (await m.setLocateDeviceStatus(spec.enable, o)),
        settle: read,
      } satisfies MutationKind<{ locateOn: boolean }> as MutationKind<unknown>;
    }
    case 'reboot': {
      const read = async (m: MinerClient, opts = o) => {
        const details = await m.getMinerDetails(opts);
        // A miner can come back from a reboot on a new DHCP lease, and another machine at its address.
        assertSameMiner(ctx.target, details.macAddress);
        const uptimeS = details.systemUptimeS;
        return { uptimeS, bootedAfterRequest: ctx.sharedNowMs() - uptimeS * 1000 > spec.notBeforeMs };
      };
      return {
        read: (m) => read(m),
        desired: (b) => ({ ...b, bootedAfterRequest: true }),
        equal: (a, b) => a.bootedAfterRequest === b.bootedAfterRequest,
        validate: async () => undefined,
        write: async (m) => void (await m.reboot(o)),
        settle: async (m) => {
          // The miner goes away and comes back: its outage must not count against its breaker.
          const asked = Date.now();
          const deadline = asked + ctx.rebootWaitMs;
          let last: { uptimeS: number; bootedAfterRequest: boolean } | undefined;
          let wentAway = false;
          while (Date.now() < deadline) {
            await new Promise((r) => setTimeout(r, 500));
            try {
              last = await read(m, { ...o, expectOutage: true });
              if (last.bootedAfterRequest) return last;
              // Up all along, its boot time the old one: it is not rebooting (a reboot takes it away
              // within seconds), and waiting the whole rebootWaitMs would hold its wave for nothing.
              if (!wentAway && Date.now() - asked >= (ctx.rebootStartMs ?? REBOOT_START_MS)) return last;
            } catch (err) {
              // Still rebooting — unless another machine answers in its place.
              if (FleetError.from(err).code === 'MINER_IDENTITY_MISMATCH') throw err;
              wentAway = true;
            }
          }
          if (last) return last;
          throw new FleetError('MINER_TIMEOUT', `the miner did not come back within ${ctx.rebootWaitMs} ms after Reboot`, { minerId: ctx.target.minerId, host: ctx.target.host });
        },
      } satisfies MutationKind<{ uptimeS: number; bootedAfterRequest: boolean }> as MutationKind<unknown>;
    }
  }
}

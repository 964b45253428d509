// What a mutation job asks for, as validated plain data. Pool passwords are references to
// credential profiles, resolved in the worker: no password is ever stored in Redis.
import { z } from 'zod';

/** The per-miner templates a pool's url and user may use (filled in by the worker for each miner). */
export const POOL_TEMPLATES = ['minerId', 'host', 'site'] as const;

/** A string whose `{name}` templates are all known: a typo such as `{minerID}` would reach every miner as is. */
const templated = (min: number) =>
  z
    .string()
    .min(min)
    .superRefine((text, ctx) => {
      const unknown = [...text.matchAll(/\{([^{}]*)\}/g)].map((m) => m[1]!).find((name) => !(POOL_TEMPLATES as readonly string[]).includes(name));
      if (unknown !== undefined) ctx.addIssue({ code: 'custom', message: `unknown template {${unknown}} in "${text}" (known: ${POOL_TEMPLATES.map((t) => `{${t}}`).join(', ')})` });
    });

export const poolSpecSchema = z
  .object({
    url: templated(1),
    user: templated(0).default(''),
    /** Name of a credentials profile whose password is the pool password. */
    passwordRef: z.string().min(1).optional(),
    enabled: z.boolean().default(true),
  })
  .strict();

export const poolGroupSpecSchema = z
  .object({
    name: z.string().min(1),
    quota: z.number().int().positive().optional(),
    fixedShareRatio: z.number().min(0).max(1).optional(),
    pools: z.array(poolSpecSchema).min(1),
  })
  .strict();

export type PoolGroupSpec = z.infer<typeof poolGroupSpecSchema>;

/**
 * Bounds no miner comes near (the largest draw ~11 kW, the fastest ~1 PH/s): a value past them is a
 * typo, refused before anything is enqueued (each miner's own range comes from GetConstraints).
 */
export const MAX_POWER_TARGET_W = 100_000;
export const MAX_HASHRATE_TARGET_THS = 100_000;

export const mutationSpecSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('power-target'), watts: z.number().int().positive().max(MAX_POWER_TARGET_W) }),
  z.object({ kind: z.literal('hashrate-target'), terahashPerSecond: z.number().positive().max(MAX_HASHRATE_TARGET_THS) }),
  z.object({ kind: z.literal('pools'), groups: z.array(poolGroupSpecSchema).min(1) }),
  z.object({ kind: z.literal('pause') }),
  z.object({ kind: z.literal('resume') }),
  /** Idempotent reboot: done once the miner has booted after `notBeforeMs` (the request time). */
  z.object({ kind: z.literal('reboot'), notBeforeMs: z.number().int().nonnegative() }),
  z.object({ kind: z.literal('locate'), enable: z.boolean() }),
]);

export type MutationSpec = z.infer<typeof mutationSpecSchema>;

export const ACTIONS = ['pause', 'resume', 'reboot', 'locate-on', 'locate-off'] as const;
export type Action = (typeof ACTIONS)[number];

export function actionSpec(action: Action, nowMs: number): MutationSpec {
  switch (action) {
    case 'pause':
      return { kind: 'pause' };
    case 'resume':
      return { kind: 'resume' };
    case 'reboot':
      return { kind: 'reboot', notBeforeMs: nowMs };
    case 'locate-on':
      return { kind: 'locate', enable: true };
    case 'locate-off':
      return { kind: 'locate', enable: false };
  }
}

export function describeSpec(spec: MutationSpec): string {
  switch (spec.kind) {
    case 'power-target':
      return `power target ${spec.watts} W`;
    case 'hashrate-target':
      return `hashrate target ${spec.terahashPerSecond} TH/s`;
    case 'pools':
      return `pools (${spec.groups.length} group${spec.groups.length === 1 ? '' : 's'})`;
    case 'locate':
      return `locate ${spec.enable ? 'on' : 'off'}`;
    default:
      return spec.kind;
  }
}

/**
 * The credentials profiles a change names as pool passwords: a worker makes it only if it has them.
 * Takes a job's unvalidated `params.mutation` as well (anything but a pools change names none).
 */
export function poolPasswordRefs(spec: unknown): string[] {
  if ((spec as { kind?: unknown } | undefined)?.kind !== 'pools') return [];
  // One spec object checked for each of 100,000 miners (a rollout's warning) is parsed once.
  let refs = refsOf.get(spec as object);
  if (!refs) {
    const parsed = mutationSpecSchema.safeParse(spec);
    refs = !parsed.success || parsed.data.kind !== 'pools' ? [] : [...new Set(parsed.data.groups.flatMap((g) => g.pools.flatMap((p) => (p.passwordRef ? [p.passwordRef] : []))))];
    refsOf.set(spec as object, refs);
  }
  return refs;
}
const refsOf = new WeakMap<object, string[]>();

/** The operation name a spec is reported under in outcomes and rollouts. */
export function operationOf(spec: MutationSpec): 'power-target' | 'hashrate-target' | 'pools' | 'pause' | 'resume' | 'reboot' | 'locate-on' | 'locate-off' {
  if (spec.kind === 'locate') return spec.enable ? 'locate-on' : 'locate-off';
  return spec.kind;
}

/** A stratum pool URL (V1 or V2, any transport), its host possibly a template. */
const STRATUM_URL = /^stratum2?\+[a-z]+:\/\/[^\s/:]+/i;

/**
 * An operator's --pools file. Beyond each group's shape, checked here (a miner would refuse them one
 * by one, and the first wave's gate would halt on it): every URL is a stratum one, and no two groups
 * share a name.
 */
export const poolsFileSchema = z
  .union([z.array(poolGroupSpecSchema).min(1), z.object({ groups: z.array(poolGroupSpecSchema).min(1) }).transform((v) => v.groups)])
  .superRefine((groups, ctx) => {
    const names = new Set<string>();
    groups.forEach((g, gi) => {
      if (names.has(g.name)) ctx.addIssue({ code: 'custom', path: [gi, 'name'], message: `"${g.name}" names two groups (a miner's pool groups have distinct names)` });
      names.add(g.name);
      g.pools.forEach((pool, pi) => {
        if (!STRATUM_URL.test(pool.url)) ctx.addIssue({ code: 'custom', path: [gi, 'pools', pi, 'url'], message: `"${pool.url}" is not a stratum URL like stratum+tcp://pool.example:3333` });
      });
    });
  });

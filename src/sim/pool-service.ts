// Pool groups on a simulated miner: the read side with share counters, and SetPoolGroups /
// UpdatePoolGroup replacing the configuration (URLs validated like a miner would).
import * as grpc from '@grpc/grpc-js';
import type { SimPoolGroup } from './miner.js';
import { SimStatusError, type MethodSpec } from './method-spec.js';

export function poolGroupConfig(g: SimPoolGroup) {
  return {
    uid: g.uid,
    name: g.name,
    ...(g.fixedShareRatio !== undefined ? { fixedShareRatio: { value: g.fixedShareRatio } } : { quota: { value: g.quota ?? 1 } }),
    pools: g.pools.map((p) => ({ uid: p.uid, url: p.url, user: p.user, enabled: p.enabled })),
  };
}

const POOL_URL = /^(stratum2?\+(tcp|ssl|tls)):\/\/[A-Za-z0-9.-]+(:\d{1,5})?(\/\S*)?$/;

interface PoolGroupInput {
  uid?: string | null;
  name?: string;
  quota?: { value?: number } | null;
  fixedShareRatio?: { value?: number } | null;
  pools?: { uid?: string | null; url?: string; user?: string; password?: string | null; enabled?: boolean | null }[];
}

function toSimGroup(input: PoolGroupInput, gi: number): SimPoolGroup {
  if (!input.name) throw new SimStatusError(grpc.status.INVALID_ARGUMENT, `pool group ${gi}: name is required`);
  const pools = (input.pools ?? []).map((p, pi) => {
    if (!p.url || !POOL_URL.test(p.url)) {
      throw new SimStatusError(grpc.status.INVALID_ARGUMENT, `pool group "${input.name}" pool ${pi}: invalid url "${p.url ?? ''}"`);
    }
    return {
      uid: p.uid ?? `pool-${gi}-${pi}`,
      url: p.url,
      user: p.user ?? '',
      ...(p.password != null ? { password: p.password } : {}),
      enabled: p.enabled ?? true,
    };
  });
  if (pools.length === 0) throw new SimStatusError(grpc.status.INVALID_ARGUMENT, `pool group "${input.name}": at least one pool is required`);
  const group: SimPoolGroup = { uid: input.uid ?? `pg-${gi}`, name: input.name, pools };
  if (input.fixedShareRatio) group.fixedShareRatio = input.fixedShareRatio.value ?? 0;
  else group.quota = input.quota?.value ?? 1;
  return group;
}

export function requireApplyAction(req: Record<string, unknown>): void {
  const action = req['saveAction'];
  if (action !== undefined && action !== 'SAVE_ACTION_SAVE' && action !== 'SAVE_ACTION_SAVE_AND_APPLY' && action !== 'SAVE_ACTION_SAVE_AND_FORCE_APPLY' && action !== 'SAVE_ACTION_UNSPECIFIED') {
    throw new SimStatusError(grpc.status.INVALID_ARGUMENT, `unknown save action ${String(action)}`);
  }
}

export const POOL_METHODS: Record<string, MethodSpec> = {
  GetPoolGroups: {
    service: 'pool',
    auth: true,
    impl: (m) => ({
      poolGroups: m.poolGroups.map((g, gi) => ({
        name: g.name,
        uid: g.uid,
        ...(g.fixedShareRatio !== undefined ? { fixedShareRatio: { value: g.fixedShareRatio } } : { quota: { value: g.quota ?? 1 } }),
        pools: g.pools.map((p, pi) => {
          const active = gi === 0 && pi === g.pools.findIndex((x) => x.enabled) && m.status === 'MINER_STATUS_NORMAL';
          return {
            uid: p.uid,
            url: p.url,
            user: p.user,
            enabled: p.enabled,
            alive: p.enabled,
            active,
            stats: active
              ? { acceptedShares: m.acceptedShares, rejectedShares: m.rejectedShares, staleShares: 0, lastDifficulty: 65536, generatedWork: 0, bestShareStr: '1.2G' }
              : { acceptedShares: 0, rejectedShares: 0, staleShares: 0, lastDifficulty: 0, generatedWork: 0, bestShareStr: '' },
          };
        }),
      })),
    }),
  },
  SetPoolGroups: {
    service: 'pool',
    since: [1, 2],
    auth: true,
    mutation: true,
    impl: (m, req) => {
      requireApplyAction(req);
      const groups = ((req['poolGroups'] as PoolGroupInput[] | undefined) ?? []).map(toSimGroup);
      if (groups.length === 0) throw new SimStatusError(grpc.status.INVALID_ARGUMENT, 'at least one pool group is required');
      m.poolGroups = groups;
      return { poolGroups: groups.map(poolGroupConfig) };
    },
  },
  UpdatePoolGroup: {
    service: 'pool',
    auth: true,
    mutation: true,
    impl: (m, req) => {
      requireApplyAction(req);
      const input = req['group'] as PoolGroupInput | undefined;
      const idx = m.poolGroups.findIndex((g) => g.uid === input?.uid);
      if (!input || idx < 0) throw new SimStatusError(grpc.status.NOT_FOUND, `pool group "${input?.uid ?? ''}" not found`);
      const group = toSimGroup(input, idx);
      m.poolGroups[idx] = group;
      return { group: poolGroupConfig(group) };
    },
  },
};

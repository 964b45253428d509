// The poll operation: reads everything an operator cares about and normalizes it, units in names.
// A method the firmware lacks is listed in `unsupported`; any other failure fails the poll.
import { FleetError } from '../../core/fleet-error.js';
import { formatVersion, type MethodName } from '../../core/methods.js';
import type { CallOptions, MinerClient } from '../../core/miner-client.js';
import type * as T from '../../core/types.js';

export interface PollSnapshot {
  apiVersion: string;
  firmware: string | null;
  model: string | null;
  hostname: string | null;
  macAddress: string | null;
  serialNumber: string | null;
  uptimeS: number | null;
  minerStatus: string | null;
  hashrate: { realGhs5m: number | null; realGhs1h: number | null; nominalGhs: number | null };
  power: { consumptionWatts: number | null; efficiencyJth: number | null; targetWatts: number | null };
  temperature: { chipMaxC: number | null; boardMaxC: number | null };
  fans: { position: number | null; rpm: number }[];
  hashboards: { id: string; enabled: boolean; chipTempC: number | null; boardTempC: number | null; hashrateGhs: number | null }[];
  pools: { group: string; url: string; user: string; active: boolean; alive: boolean; acceptedShares: number; rejectedShares: number }[];
  tuner: { state: string | null };
  errors: { message: string; codes: string[] }[] | null;
  unsupported: string[];
}

const stripPrefix = (value: string | undefined, prefix: string): string | null => (value ? value.replace(prefix, '') : null);
const maxOf = (values: (number | null | undefined)[]): number | null => {
  const nums = values.filter((v): v is number => typeof v === 'number');
  return nums.length ? Math.max(...nums) : null;
};

export async function pollMiner(miner: MinerClient, opts: CallOptions = {}): Promise<PollSnapshot> {
  const version = await miner.apiVersion(opts);
  const unsupported: string[] = [];
  // A method the firmware lacks resolves to null and is listed; any other failure stays a failure.
  const optional = <R>(method: MethodName, call: Promise<R>): Promise<R | null> =>
    call.catch((err: unknown) => {
      if (FleetError.from(err).code !== 'UNSUPPORTED_BY_FIRMWARE') throw err;
      unsupported.push(method);
      return null;
    });
  const settled = await Promise.allSettled([
    miner.getMinerDetails(opts),
    miner.getMinerStats(opts),
    optional('GetHashboards', miner.getHashboards(opts)),
    optional('GetCoolingState', miner.getCoolingState(opts)),
    optional('GetPoolGroups', miner.getPoolGroups(opts)),
    optional('GetTunerState', miner.getTunerState(opts)),
    optional('GetErrors', miner.getErrors(opts)),
  ] as const);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  const [details, stats, boards, cooling, pools, tuner, errors] = settled.map((s) => (s as PromiseFulfilledResult<unknown>).value) as [
    T.MinerDetails,
    T.MinerStats,
    { hashboards: T.Hashboard[] } | null,
    T.CoolingState | null,
    { poolGroups: T.PoolGroupReadSide[] } | null,
    T.TunerState | null,
    { errors: T.MinerErrorEntry[] } | null,
  ];
  const hashboards = (boards?.hashboards ?? []).map((b) => ({
    id: b.id,
    enabled: b.enabled,
    chipTempC: b.highestChipTemp?.temperature?.degreeC ?? null,
    boardTempC: b.boardTemp?.degreeC ?? null,
    hashrateGhs: b.stats?.realHashrate?.last_5m?.gigahashPerSecond ?? null,
  }));
  return {
    apiVersion: formatVersion(version),
    firmware: details.bosVersion?.current ?? null,
    model: details.minerIdentity?.minerModel || details.minerIdentity?.name || null,
    hostname: details.hostname || null,
    macAddress: details.macAddress || null,
    serialNumber: details.serialNumber ?? null,
    uptimeS: details.systemUptimeS ?? null,
    minerStatus: stripPrefix(details.status, 'MINER_STATUS_'),
    hashrate: {
      realGhs5m: stats.minerStats?.realHashrate?.last_5m?.gigahashPerSecond ?? null,
      realGhs1h: stats.minerStats?.realHashrate?.last_1h?.gigahashPerSecond ?? null,
      nominalGhs: stats.minerStats?.nominalHashrate?.gigahashPerSecond ?? null,
    },
    power: {
      consumptionWatts: stats.powerStats?.approximatedConsumption?.watt ?? null,
      efficiencyJth: stats.powerStats?.efficiency?.joulePerTerahash ?? null,
      targetWatts: tuner?.powerTargetModeState?.currentTarget?.watt ?? null,
    },
    temperature: {
      chipMaxC: maxOf([...hashboards.map((b) => b.chipTempC), cooling?.highestTemperature?.temperature?.degreeC]),
      boardMaxC: maxOf(hashboards.map((b) => b.boardTempC)),
    },
    fans: (cooling?.fans ?? []).map((f) => ({ position: f.position ?? null, rpm: f.rpm })),
    hashboards,
    pools: (pools?.poolGroups ?? []).flatMap((g) =>
      g.pools.map((p) => ({
        group: g.name,
        url: p.url,
        user: p.user,
        active: p.active,
        alive: p.alive,
        acceptedShares: p.stats?.acceptedShares ?? 0,
        rejectedShares: p.stats?.rejectedShares ?? 0,
      })),
    ),
    tuner: { state: stripPrefix(tuner?.overallTunerState, 'TUNER_STATE_') },
    errors: errors ? errors.errors.map((e) => ({ message: e.message, codes: e.errorCodes.map((c) => c.code) })) : null,
    unsupported,
  };
}

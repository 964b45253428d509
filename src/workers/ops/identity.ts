// The inventory may give a miner's MAC address: then a job first checks that the machine answering
// at the miner's address is that miner. Farms hand addresses out by DHCP; after a lease moves, a poll
// would report another machine's data as the named miner's, and a rollout would change it.
import { hostPort } from '../../core/channel-options.js';
import { FleetError } from '../../core/fleet-error.js';
import type { JobTarget } from '../../fleet/job.js';
import { normalizeMac } from '../../fleet/job.js';

/** Throws MINER_IDENTITY_MISMATCH unless `reported` (the miner's GetMinerDetails MAC) is the target's `mac`. */
export function assertSameMiner(target: JobTarget, reported: string | null | undefined): void {
  if (!target.mac) return;
  const got = reported ? normalizeMac(reported) : undefined;
  if (got === target.mac) return;
  const what = got ? `reports MAC ${got}` : reported ? `reports a MAC address that is none (${JSON.stringify(reported.slice(0, 40))})` : 'reports no MAC address';
  throw new FleetError('MINER_IDENTITY_MISMATCH', `the machine at ${hostPort(target.host, target.port)} ${what}; the inventory has ${target.mac} for ${target.minerId}`, {
    minerId: target.minerId,
    host: target.host,
    port: target.port,
    mayHaveReachedMiner: false,
  });
}

// `bos-fleet sim`: runs a simulated Braiins OS fleet on loopback until stopped.
import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { inventoryCsv, startSimFleet, SIM_PASSWORD, SIM_USERNAME } from '../sim/index.js';
import { parseFaultSpec } from '../sim/faults.js';
import { DEFAULT_BASE, DEFAULT_PORT } from '../sim/plan.js';
import { positiveInt } from './parse.js';

export function registerSim(program: Command): void {
  program
    .command('sim')
    .description('run a simulated Braiins OS fleet on loopback addresses (127.x.y.z:50051) until stopped')
    .requiredOption('--miners <n>', 'number of simulated miners', positiveInt('--miners'))
    .option('--base <ip>', 'first miner address (loopback only)', DEFAULT_BASE)
    .option('--port <n>', 'gRPC port of every miner', positiveInt('--port'), DEFAULT_PORT)
    .option('--faults <spec>', 'fault mix, e.g. offline=2%,slow=5%:800ms,flaky=3%,old-api=10%', '')
    .option('--seed <n>', 'seed for the generated data and fault assignment', positiveInt('--seed'), 1)
    .option('--inventory-out <file>', 'write the matching inventory CSV here')
    .option('--credentials-out <file>', 'write a credentials file ({"default": {username, password}}) here')
    .action(async (opts: { miners: number; base: string; port: number; faults: string; seed: number; inventoryOut?: string; credentialsOut?: string }) => {
      parseFaultSpec(opts.faults); // fail before binding anything
      const started = Date.now();
      const fleet = await startSimFleet({ miners: opts.miners, base: opts.base, port: opts.port, faults: opts.faults, seed: opts.seed });
      if (opts.inventoryOut) writeFileSync(opts.inventoryOut, inventoryCsv(fleet.miners));
      if (opts.credentialsOut) {
        writeFileSync(opts.credentialsOut, JSON.stringify({ default: { username: SIM_USERNAME, password: SIM_PASSWORD } }, null, 2) + '\n', { mode: 0o600 });
      }
      const first = fleet.miners[0];
      const last = fleet.miners[fleet.miners.length - 1];
      console.log(
        `sim: ${fleet.miners.length} miners on ${first?.host}…${last?.host}:${opts.port} in ${Date.now() - started} ms` +
          (opts.faults ? ` (faults: ${opts.faults})` : '') +
          (opts.inventoryOut ? `; inventory: ${opts.inventoryOut}` : ''),
      );
      console.log(`sim: credentials username=${SIM_USERNAME} password=${SIM_PASSWORD}; Ctrl-C to stop`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await fleet.close();
    });
}

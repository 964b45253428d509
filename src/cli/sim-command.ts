// `bos-fleet sim`: runs a simulated Braiins OS fleet on loopback until stopped.
import { readFileSync, writeFileSync } from 'node:fs';
import tls from 'node:tls';
import type { Command } from 'commander';
import { inventoryCsv, startSimFleet, SIM_PASSWORD, SIM_USERNAME } from '../sim/index.js';
import { parseFaultSpec } from '../sim/faults.js';
import { DEFAULT_BASE, DEFAULT_PORT } from '../sim/plan.js';
import { fileProblem } from '../core/file-problem.js';
import type { SimTlsOptions } from '../sim/control.js';
import { positiveInt } from './parse.js';

interface SimTlsFlags {
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
}

/** The sim's TLS from its flags, checked before anything binds: each error names the option and the file. */
function simTls(f: SimTlsFlags): SimTlsOptions | undefined {
  if (!f.tlsCert && !f.tlsKey) {
    if (f.tlsClientCa) throw new Error(`sim: --tls-client-ca "${f.tlsClientCa}" needs --tls-cert and --tls-key (mTLS is TLS with client certificates)`);
    return undefined;
  }
  if (!f.tlsCert || !f.tlsKey) throw new Error(`sim: --tls-cert and --tls-key go together (got ${f.tlsCert ? `--tls-cert "${f.tlsCert}"` : `--tls-key "${f.tlsKey}"`} alone)`);
  const read = (option: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new Error(`sim: ${option} "${file}": ${fileProblem(err)}`);
    }
  };
  const certPem = read('--tls-cert', f.tlsCert);
  const keyPem = read('--tls-key', f.tlsKey);
  try {
    tls.createSecureContext({ cert: certPem, key: keyPem });
  } catch (err) {
    throw new Error(`sim: --tls-key "${f.tlsKey}" does not go with --tls-cert "${f.tlsCert}" (${(err as Error).message})`);
  }
  if (!f.tlsClientCa) return { certPem, keyPem };
  const clientCaPem = read('--tls-client-ca', f.tlsClientCa);
  try {
    tls.createSecureContext({ ca: clientCaPem });
  } catch (err) {
    throw new Error(`sim: --tls-client-ca "${f.tlsClientCa}" is not a usable CA bundle (${(err as Error).message})`);
  }
  return { certPem, keyPem, clientCaPem };
}

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
    .option('--tls-cert <file>', 'serve TLS only, every miner with this certificate (PEM; give the name it holds as serverName in the --tls file of poll/worker)')
    .option('--tls-key <file>', "the certificate's private key (PEM)")
    .option('--tls-client-ca <file>', 'require client certificates signed by this CA (mTLS)')
    .action(async (opts: { miners: number; base: string; port: number; faults: string; seed: number; inventoryOut?: string; credentialsOut?: string } & SimTlsFlags) => {
      parseFaultSpec(opts.faults); // fail before binding anything
      const tlsOpts = simTls(opts);
      const started = Date.now();
      const fleet = await startSimFleet({ miners: opts.miners, base: opts.base, port: opts.port, faults: opts.faults, seed: opts.seed, ...(tlsOpts ? { tls: tlsOpts } : {}) });
      if (opts.inventoryOut) writeFileSync(opts.inventoryOut, inventoryCsv(fleet.miners));
      if (opts.credentialsOut) {
        writeFileSync(opts.credentialsOut, JSON.stringify({ default: { username: SIM_USERNAME, password: SIM_PASSWORD } }, null, 2) + '\n', { mode: 0o600 });
      }
      const first = fleet.miners[0];
      const last = fleet.miners[fleet.miners.length - 1];
      console.log(
        `sim: ${fleet.miners.length} miners on ${first?.host}…${last?.host}:${opts.port} in ${Date.now() - started} ms` +
          (opts.faults ? ` (faults: ${opts.faults})` : '') +
          (tlsOpts ? (tlsOpts.clientCaPem ? ', TLS with client certificates (mTLS)' : ', TLS') : '') +
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

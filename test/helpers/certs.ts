// Certificates generated at test time with openssl: a CA, a miner certificate, a client certificate,
// and a second CA nobody trusts.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface TestCerts {
  dir: string;
  caFile: string;
  otherCaFile: string;
  serverKey: Buffer;
  serverCert: Buffer;
  caPem: Buffer;
  clientCertFile: string;
  clientKeyFile: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'ignore' });
}

function makeCa(dir: string, name: string): void {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-days', '2', '-subj', `/CN=${name}`], dir);
}

function makeLeaf(dir: string, name: string, ca: string, ext: string): void {
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`], dir);
  writeFileSync(path.join(dir, `${name}.ext`), ext);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`], dir);
}

export function makeTestCerts(serverIp: string): TestCerts {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bos-fleet-certs-'));
  makeCa(dir, 'farm-ca');
  makeCa(dir, 'other-ca');
  makeLeaf(dir, 'miner', 'farm-ca', `subjectAltName=DNS:miner.farm.local,IP:${serverIp}\nextendedKeyUsage=serverAuth\n`);
  makeLeaf(dir, 'client', 'farm-ca', 'extendedKeyUsage=clientAuth\n');
  const f = (n: string) => path.join(dir, n);
  return {
    dir,
    caFile: f('farm-ca.pem'),
    otherCaFile: f('other-ca.pem'),
    caPem: readFileSync(f('farm-ca.pem')),
    serverKey: readFileSync(f('miner.key')),
    serverCert: readFileSync(f('miner.pem')),
    clientCertFile: f('client.pem'),
    clientKeyFile: f('client.key'),
  };
}

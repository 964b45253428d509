// TLS and mTLS against simulated miners with certificates made at test time.
import { rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetError, loadTlsMaterial, type FleetCore, type TlsProfile } from '../src/core/index.js';
import { SimFleet } from '../src/sim/fleet.js';
import { makeTestCerts, type TestCerts } from './helpers/certs.js';
import { simTarget, testCore } from './helpers/core.js';

const TLS_HOST = '127.7.0.1';
const MTLS_HOST = '127.7.0.2';
const PLAIN_HOST = '127.7.0.3';
let certs: TestCerts;
const fleets: SimFleet[] = [];
let core: FleetCore;

beforeAll(async () => {
  certs = makeTestCerts(TLS_HOST);
  const tlsOpts = { keyPem: certs.serverKey, certPem: certs.serverCert };
  fleets.push(await SimFleet.start({ miners: [{ id: 'tls', index: 0, host: TLS_HOST, port: 50051, faults: {} }], tls: tlsOpts }));
  fleets.push(await SimFleet.start({ miners: [{ id: 'mtls', index: 1, host: MTLS_HOST, port: 50051, faults: {} }], tls: { ...tlsOpts, clientCaPem: certs.caPem } }));
  fleets.push(await SimFleet.start({ miners: [{ id: 'plain', index: 2, host: PLAIN_HOST, port: 50051, faults: {} }] }));
  core = testCore();
});
afterAll(async () => {
  core.close();
  await Promise.all(fleets.map((f) => f.close()));
  rmSync(certs.dir, { recursive: true, force: true });
});

async function stats(id: string, host: string, profile?: TlsProfile) {
  const target = { ...simTarget(id, host), ...(profile ? { tls: loadTlsMaterial(profile, JSON.stringify(profile)) } : {}) };
  const m = core.miner(target);
  try {
    await m.getMinerStats();
    return { code: 'OK', transport: m.transport };
  } catch (err) {
    const e = FleetError.from(err);
    return { code: e.code, transport: m.transport, message: e.message };
  }
}

describe('TLS', () => {
  it('verifies the miner against the CA (IP in the certificate)', async () => {
    expect(await stats('tls', TLS_HOST, { caFile: certs.caFile })).toEqual({ code: 'OK', transport: 'tls' });
  });

  it('accepts a server name override for the certificate name', async () => {
    expect(await stats('tls', TLS_HOST, { caFile: certs.caFile, serverName: 'miner.farm.local' })).toMatchObject({ code: 'OK' });
  });

  it('unknown CA → TLS_ERROR', async () => {
    expect(await stats('tls', TLS_HOST, { caFile: certs.otherCaFile })).toMatchObject({ code: 'TLS_ERROR' });
  });

  it('name mismatch → TLS_ERROR', async () => {
    expect(await stats('tls', TLS_HOST, { caFile: certs.caFile, serverName: 'someone-else.local' })).toMatchObject({ code: 'TLS_ERROR' });
  });

  it('TLS client to a plaintext miner → TLS_ERROR', async () => {
    expect(await stats('plain', PLAIN_HOST, { caFile: certs.caFile })).toMatchObject({ code: 'TLS_ERROR' });
  });

  it('plaintext client to a TLS miner fails, and the outcome says plaintext and that the miner may want TLS', async () => {
    const r = await stats('tls', TLS_HOST);
    expect(r.transport).toBe('plaintext');
    expect(r.code).toBe('MINER_UNREACHABLE');
    // grpc-js's own word for it is only "Failed to connect".
    expect(r.message).toMatch(
      /Failed to connect \(.*\): the miner's port took the connection and closed it before gRPC began: a miner that serves TLS only does that to a plaintext client \(if it does, give its site in --tls\)$/,
    );
  });
});

describe('mTLS', () => {
  it('succeeds with the client certificate', async () => {
    expect(await stats('mtls', MTLS_HOST, { caFile: certs.caFile, serverName: 'miner.farm.local', certFile: certs.clientCertFile, keyFile: certs.clientKeyFile })).toEqual({ code: 'OK', transport: 'tls' });
  });

  it('fails without a client certificate', async () => {
    const r = await stats('mtls', MTLS_HOST, { caFile: certs.caFile, serverName: 'miner.farm.local' });
    expect(['TLS_ERROR', 'CONNECTION_LOST', 'MINER_UNREACHABLE']).toContain(r.code);
  });
});

describe('TLS material is checked at start-up', () => {
  it('names a missing file, a non-PEM file, a lone cert, and a key that does not match', () => {
    expect(() => loadTlsMaterial({ caFile: '/nonexistent/ca.pem' })).toThrow(/tls\.caFile: cannot read "\/nonexistent\/ca.pem": no such file$/);
    expect(() => loadTlsMaterial({ caFile: path.join(certs.dir, 'miner.ext') })).toThrow(/is not a PEM file/);
    expect(() => loadTlsMaterial({ caFile: certs.caFile, certFile: certs.clientCertFile })).toThrow(/certFile and keyFile go together/);
    expect(() => loadTlsMaterial({ caFile: certs.caFile, certFile: certs.clientCertFile, keyFile: path.join(certs.dir, 'miner.key') })).toThrow(/does not match/);
  });
});

// Per-site TLS / mTLS material: validated at start-up, never silently downgraded.
import { readFileSync } from 'node:fs';
import { fileProblem } from './file-problem.js';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { z } from 'zod';

export const tlsProfileSchema = z
  .object({
    /** CA bundle (PEM) the miners' certificates chain to. */
    caFile: z.string().min(1),
    /** Client certificate (PEM) for mTLS; needs keyFile. */
    certFile: z.string().min(1).optional(),
    keyFile: z.string().min(1).optional(),
    /** Name expected in the miner's certificate (miners are addressed by IP). */
    serverName: z.string().min(1).optional(),
  })
  .strict();

export type TlsProfile = z.infer<typeof tlsProfileSchema>;

export interface TlsMaterial {
  ca: Buffer;
  cert?: Buffer;
  key?: Buffer;
  serverName?: string;
  /** Identifies the material in pool keys (channels with different TLS never share). */
  id: string;
}

function readPem(file: string, field: string): Buffer {
  let data: Buffer;
  try {
    data = readFileSync(file);
  } catch (err) {
    throw new TypeError(`tls.${field}: cannot read "${file}": ${fileProblem(err)}`);
  }
  if (!data.includes('-----BEGIN ')) throw new TypeError(`tls.${field}: "${file}" is not a PEM file`);
  return data;
}

/** Whether TLS configured for `sites` (site names, `*` = every site) covers `site`. */
export function siteHasTls(sites: readonly string[], site: string): boolean {
  return sites.includes(site) || sites.includes('*');
}

/** Each site's TLS material, read and checked once: `forSite` gives a site its own, else the `*` entry's. */
export function siteTlsLookup(bySite: Record<string, TlsProfile> | undefined): { sites: string[]; forSite(site: string): TlsMaterial | undefined } {
  const tls = new Map(Object.entries(bySite ?? {}).map(([site, profile]) => [site, loadTlsMaterial(profile, `site:${site}`)] as const));
  return { sites: [...tls.keys()], forSite: (site) => tls.get(site) ?? tls.get('*') };
}

/** Reads and checks the files now, so a bad path fails at start-up with a clear error. */
export function loadTlsMaterial(profile: TlsProfile, id = 'tls'): TlsMaterial {
  const p = tlsProfileSchema.parse(profile);
  if (Boolean(p.certFile) !== Boolean(p.keyFile)) {
    throw new TypeError(`tls: certFile and keyFile go together for mTLS (got certFile=${JSON.stringify(p.certFile)}, keyFile=${JSON.stringify(p.keyFile)})`);
  }
  const ca = readPem(p.caFile, 'caFile');
  const material: TlsMaterial = { ca, id };
  if (p.certFile && p.keyFile) {
    material.cert = readPem(p.certFile, 'certFile');
    material.key = readPem(p.keyFile, 'keyFile');
    try {
      tls.createSecureContext({ cert: material.cert, key: material.key });
    } catch (err) {
      throw new TypeError(`tls: keyFile "${p.keyFile}" does not match certFile "${p.certFile}" (${(err as Error).message})`);
    }
  }
  try {
    tls.createSecureContext({ ca });
  } catch (err) {
    throw new TypeError(`tls.caFile: "${p.caFile}" is not a usable CA bundle (${(err as Error).message})`);
  }
  if (p.serverName) material.serverName = p.serverName;
  return material;
}

export function channelCredentials(tlsMaterial: TlsMaterial | undefined): grpc.ChannelCredentials {
  if (!tlsMaterial) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(tlsMaterial.ca, tlsMaterial.key ?? null, tlsMaterial.cert ?? null);
}

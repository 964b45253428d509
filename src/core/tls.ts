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

let ipServernameQuiet = false;

/**
 * With no serverName, grpc-js hands Node's tls.connect the miner's address as the SNI server name.
 * For an IP address (how farms address miners) Node sends no SNI, as RFC 6066 wants, and prints
 * "[DEP0123] DeprecationWarning: Setting the TLS ServerName to an IP address…" once per process and
 * thread: an alarming line in an operator's log about nothing they can or need change (the
 * certificate is still checked against the IP). This drops that one warning, and nothing else.
 */
function quietIpServernameWarning(): void {
  if (ipServernameQuiet) return;
  ipServernameQuiet = true;
  const emitWarning = process.emitWarning;
  process.emitWarning = function (this: NodeJS.Process, warning: string | Error, ...rest: unknown[]) {
    // Node's own call is emitWarning(message, 'DeprecationWarning', 'DEP0123'); an options object may carry the code too.
    const code = typeof rest[0] === 'object' && rest[0] !== null ? (rest[0] as { code?: unknown }).code : rest[1];
    if (code === 'DEP0123') return;
    return (emitWarning as (...args: unknown[]) => void).call(this, warning, ...rest);
  } as typeof process.emitWarning;
}

export function channelCredentials(tlsMaterial: TlsMaterial | undefined): grpc.ChannelCredentials {
  if (!tlsMaterial) return grpc.credentials.createInsecure();
  if (!tlsMaterial.serverName) quietIpServernameWarning();
  return grpc.credentials.createSsl(tlsMaterial.ca, tlsMaterial.key ?? null, tlsMaterial.cert ?? null);
}

// Inventory files (CSV with a header row, or JSON): validated whole — one bad row rejects the file,
// and every error names the file, the line (or index) and the field with its bad value.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { z } from 'zod';
import { normalizeMac, type JobTarget } from '../fleet/job.js';
import { parseCsv } from './csv.js';
import { fileProblem } from '../core/file-problem.js';
import { parseJson } from '../fleet/json-file.js';

const HOSTNAME = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** What a host that is no address nor hostname was probably meant to be. */
function hostHint(host: string): string {
  const bracketed = /^\[([^\]]*)\](?::\d+)?$/.exec(host.trim());
  if (bracketed && net.isIP(bracketed[1]!) === 6) return ` (an IPv6 address goes without brackets: ${bracketed[1]}${host.trim().endsWith(']') ? '' : ', the port in the port column'})`;
  return /^[^:]+:\d+$/.test(host) ? ' (the port goes in the port column)' : '';
}

const PORT_RANGE = 'must be a whole number from 1 to 65535 (the miner\'s gRPC port, 50051 unless changed)';

export const inventoryEntrySchema = z.object({
  id: z
    .string()
    .trim()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'must be 1–128 characters of letters, digits, ".", "_" or "-"')
    .refine((v) => !/^\d+$/.test(v), 'must not be all digits'),
  host: z
    .string()
    .trim()
    // Not an IP address, yet one to the resolver (inet_aton: 1-4 parts, each decimal, octal or hex —
    // "0x7f.0.0.1", "127.1", "10.0.0.010" is 10.0.0.8): refused, it would reach another miner.
    .refine((v) => net.isIP(v) !== 0 || (HOSTNAME.test(v) && !/^((0x[0-9a-f]*|\d+)\.){0,3}(0x[0-9a-f]*|\d+)\.?$/i.test(v)), {
      error: (iss) => `is not an IP address or hostname${hostHint(String(iss.input))}`,
    }),
  port: z.coerce
    .number({ error: PORT_RANGE })
    .refine((v) => Number.isInteger(v) && v >= 1 && v <= 65535, { error: PORT_RANGE })
    .default(50051),
  site: z.string().trim().default(''),
  tags: z
    .union([z.array(z.string()), z.string()])
    .default([])
    .transform((v) => (Array.isArray(v) ? v : v.split(';')).map((t) => t.trim()).filter(Boolean)),
  credentials: z.string().trim().min(1).default('default'),
  // Optional: with it, every job first checks that the machine at `host` is this miner.
  mac: z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return undefined;
      const mac = normalizeMac(v);
      if (!mac) ctx.addIssue({ code: 'custom', message: 'is not a MAC address (like aa:bb:cc:dd:ee:ff)' });
      return mac;
    }),
});

const FIELDS = Object.keys(inventoryEntrySchema.shape);

/** Edit distance of two short names: insertions, deletions, substitutions and swaps of neighbours. */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i]!;
      row[j] = Math.min(d[i - 1]![j]! + 1, row[j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The inventory field an unknown column or key is most likely a misspelling of ("credential",
 * "crendentials", "sites"), if any. Such a column would be ignored and its field take its default —
 * every miner on the `default` profile, or on no site (so no TLS) — so it is refused instead. Other
 * columns (a farm's export may have "model" or "location") are ignored.
 */
export function misspeltField(name: string): string | undefined {
  if (FIELDS.includes(name)) return undefined;
  // One slip in a short name ("prot", "hots"), two in "credentials"; not "pool" or "state", columns of their own.
  return FIELDS.find((f) => name === `${f}s` || `${name}s` === f || (name.length >= 4 && f.length >= 4 && distance(name, f) <= (f.length >= 8 ? 2 : 1)));
}

export interface Inventory {
  file: string;
  targets: JobTarget[];
  /** sha256 of the normalized targets: identifies the target set in run records and audits. */
  digest: string;
}

export class InventoryError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`inventory ${file} rejected (${problems.length} problem${problems.length === 1 ? '' : 's'}, nothing enqueued):\n  ${problems.slice(0, 20).join('\n  ')}${problems.length > 20 ? `\n  … and ${problems.length - 20} more` : ''}`);
  }
}

interface RawRow {
  where: string;
  record: Record<string, unknown>;
  /** A row that cannot be read as a record (more fields than the header): reported with the others. */
  problem?: string;
}

function rowsFromCsv(text: string): RawRow[] {
  const rows = parseCsv(text);
  const header = rows.shift();
  if (!header) return [];
  const names = header.fields.map((h) => h.trim().toLowerCase());
  if (!names.includes('id') || !names.includes('host')) {
    // A spreadsheet set to another locale saves with ';' (or tabs) between fields.
    const sep = names.length === 1 ? [';', '\t'].find((c) => names[0]?.includes(c)) : undefined;
    const hint = sep ? `: fields are separated by ${sep === ';' ? '";"' : 'tabs'} here; save the file with commas` : '';
    throw new Error(`line ${header.line}: the header row must name at least "id" and "host" (got ${names.join(',')})${hint}`);
  }
  const misspelt = names.flatMap((n) => {
    const meant = misspeltField(n);
    return meant ? [`column "${n}" is not an inventory field: did you mean "${meant}"?`] : [];
  });
  if (misspelt.length) throw new Error(`line ${header.line}: ${misspelt.join('; ')} (the fields: ${FIELDS.join(', ')})`);
  return rows.map((r) => {
    if (r.fields.length > names.length) {
      // Most often an unquoted comma inside a value (tags "a,b" for "a;b", a site name).
      const problem = `line ${r.line}: ${r.fields.length} fields, the header has ${names.length} (a value holding a comma must be in double quotes; tags are separated by ";")`;
      return { where: `line ${r.line}`, record: {}, problem };
    }
    const record: Record<string, unknown> = {};
    names.forEach((n, i) => {
      const v = r.fields[i];
      if (v !== undefined && v.trim() !== '') record[n] = v;
    });
    return { where: `line ${r.line}`, record };
  });
}

function rowsFromJson(text: string): RawRow[] {
  const data = parseJson(text);
  const list = Array.isArray(data) ? data : (data as { miners?: unknown })?.miners;
  if (!Array.isArray(list)) throw new Error('JSON inventory must be an array of miners (or {"miners": [...]})');
  // Where a bad entry is: its array index (as jq's `.[i]`) and, to find it by, its id when it has one.
  return list.map((record, i) => {
    const id = (record as { id?: unknown } | null)?.id;
    return { where: `entry ${i}${typeof id === 'string' && id.trim() ? ` (id ${JSON.stringify(id)})` : ''}`, record: record as Record<string, unknown> };
  });
}

export function parseInventory(text: string, file: string): Inventory {
  let rows: RawRow[];
  try {
    rows = /^\s*[[{]/.test(text) ? rowsFromJson(text) : rowsFromCsv(text);
  } catch (err) {
    throw new InventoryError(file, [(err as Error).message]);
  }
  const problems: string[] = [];
  const targets: JobTarget[] = [];
  const seenIds = new Map<string, string>();
  const seenHosts = new Map<string, string>();
  const seenMacs = new Map<string, string>();
  const misspeltKeys = new Set<string>(); // said once, at the first entry that has it
  for (const { where, record, problem } of rows) {
    if (problem) {
      problems.push(problem);
      continue;
    }
    if (typeof record !== 'object' || record === null || Array.isArray(record)) {
      const got = JSON.stringify(record) ?? String(record);
      problems.push(`${where}: must be an object {"id", "host", …}, got ${got.length > 60 ? `${got.slice(0, 60)}…` : got}`);
      continue;
    }
    for (const key of Object.keys(record)) {
      const meant = misspeltField(key);
      if (meant && !misspeltKeys.has(key)) {
        misspeltKeys.add(key);
        problems.push(`${where}: key "${key}" is not an inventory field: did you mean "${meant}"? (the fields: ${FIELDS.join(', ')})`);
      }
    }
    const r = inventoryEntrySchema.safeParse(record);
    if (!r.success) {
      for (const issue of r.error.issues) {
        const field = issue.path.join('.') || '(row)';
        const value = record[field];
        problems.push(`${where}: field ${field}: ${value === undefined || value === null ? 'is missing or empty (it is required)' : `${JSON.stringify(value)} ${issue.message}`}`);
      }
      continue;
    }
    const e = r.data;
    // One miner written two ways is one miner (changed twice otherwise): host names are case-blind,
    // and an IPv6 address has many spellings (0:0:0:0:0:0:0:1 is ::1).
    const hostKey = `${net.isIP(e.host) === 6 ? new URL(`http://[${e.host}]`).hostname : e.host.toLowerCase()}:${e.port}`;
    const dupId = seenIds.get(e.id);
    const dupHost = seenHosts.get(hostKey);
    const dupMac = e.mac ? seenMacs.get(e.mac) : undefined;
    if (dupId) problems.push(`${where}: field id: "${e.id}" duplicates ${dupId}`);
    if (dupHost) problems.push(`${where}: field host: "${hostKey}" duplicates ${dupHost}`);
    if (dupMac) problems.push(`${where}: field mac: "${e.mac}" duplicates ${dupMac}`);
    seenIds.set(e.id, where);
    seenHosts.set(hostKey, where);
    if (e.mac) seenMacs.set(e.mac, where);
    targets.push({ minerId: e.id, host: e.host, port: e.port, site: e.site, tags: e.tags, credentials: e.credentials, ...(e.mac ? { mac: e.mac } : {}) });
  }
  if (rows.length === 0) problems.push('no miners in the file');
  if (problems.length > 0) throw new InventoryError(file, problems);
  return { file, targets, digest: targetsDigest(targets) };
}

/** Identifies a target set (in run records and audits): sha256 of its normalized targets. */
export const targetsDigest = (targets: readonly JobTarget[]): string => createHash('sha256').update(JSON.stringify(targets)).digest('hex');

export function loadInventory(file: string): Inventory {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new InventoryError(file, [`cannot read the file: ${fileProblem(err)}`]);
  }
  return parseInventory(text, file);
}

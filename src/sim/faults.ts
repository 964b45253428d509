// Fault kinds a simulated miner can be told to have, and the `offline=2%,slow=5%:800ms` spec parser.
import { z } from 'zod';
import { seededRandom } from './prng.js';
import { parseDurationMs } from '../fleet/ids-and-durations.js';

export const FAULT_KINDS = [
  'refuse', // nothing listens on the miner's address
  'blackhole', // TCP accepted, never a byte back
  'hang', // gRPC works, but calls are never answered
  'slow', // every reply delayed by latencyMs
  'flaky', // UNAVAILABLE for the first `failFirst` calls, or for a fraction `rate` of calls
  'drop-stream', // status streams are cut (connection reset) after `afterMessages` messages
  'bad-auth', // the miner's password differs from the inventory's credentials
  'token-expiry', // sessions expire after `ttlMs` of inactivity
  'oversized', // replies carry `bytes` of padding
  'malformed', // replies are bytes that do not decode as the response message
  'garbage', // a non-gRPC peer on the port
  'overloaded', // every call answers RESOURCE_EXHAUSTED
  'reboot-loop', // reboots every `upMs`, down for `downMs`
  'old-api', // speaks API 1.0.0
  'lost-reply', // applies writes but never answers them
  'drop-writes', // never applies nor answers writes (reads work)
] as const;

export type FaultKind = (typeof FAULT_KINDS)[number];

export interface MinerFaults {
  refuse?: boolean;
  blackhole?: boolean;
  hang?: boolean;
  slow?: { latencyMs: number };
  flaky?: { failFirst?: number; rate?: number };
  dropStream?: { afterMessages: number };
  badAuth?: boolean;
  tokenExpiry?: { ttlMs: number };
  oversized?: { bytes: number };
  malformed?: boolean;
  garbage?: boolean;
  overloaded?: boolean;
  rebootLoop?: { upMs: number; downMs: number };
  oldApi?: boolean;
  lostReply?: boolean;
  dropWrites?: boolean;
}

export interface FaultMixEntry {
  kind: FaultKind;
  fraction: number;
  /** The value after ':' (e.g. `800ms`, `3`), parsed per kind. */
  param?: string;
}

const durationMs = (text: string, field: string): number => parseDurationMs(text, field, { defaultUnit: 'ms', example: '800ms or 2s' });

/** Parses `offline=2%,slow=5%:800ms,flaky=3%,old-api=10%`. `offline` is an alias of `refuse`. */
export function parseFaultSpec(spec: string): FaultMixEntry[] {
  if (spec.trim() === '') return [];
  const entries = spec.split(',').map((part) => {
    const m = /^\s*([a-z-]+)\s*=\s*(\d+(?:\.\d+)?)%\s*(?::\s*(\S+))?\s*$/.exec(part);
    if (!m) throw new Error(`faults: entry "${part}" must look like kind=N% or kind=N%:param`);
    const name = m[1] === 'offline' ? 'refuse' : m[1];
    const kind = z.enum(FAULT_KINDS).safeParse(name);
    if (!kind.success) {
      throw new Error(`faults: unknown fault kind "${m[1]}" (known: offline, ${FAULT_KINDS.join(', ')})`);
    }
    const fraction = Number(m[2]) / 100;
    if (fraction > 1) throw new Error(`faults: ${m[1]} fraction ${m[2]}% is above 100%`);
    const entry: FaultMixEntry = { kind: kind.data, fraction };
    if (m[3] !== undefined) entry.param = m[3];
    faultFromEntry(entry); // validates the parameter now, not when the fleet starts
    return entry;
  });
  const total = entries.reduce((sum, e) => sum + e.fraction, 0);
  if (total > 1) throw new Error(`faults: fractions add up to ${(total * 100).toFixed(1)}%, above 100%`);
  return entries;
}

/** The MinerFaults that one spec entry gives a miner. */
export function faultFromEntry(entry: FaultMixEntry): MinerFaults {
  const p = entry.param;
  switch (entry.kind) {
    case 'refuse':
      return { refuse: true };
    case 'blackhole':
      return { blackhole: true };
    case 'hang':
      return { hang: true };
    case 'slow':
      return { slow: { latencyMs: p ? durationMs(p, 'slow') : 800 } };
    case 'flaky':
      return { flaky: p ? { failFirst: Number.parseInt(p, 10) || 2 } : { failFirst: 2 } };
    case 'drop-stream':
      return { dropStream: { afterMessages: p ? Number.parseInt(p, 10) || 1 : 1 } };
    case 'bad-auth':
      return { badAuth: true };
    case 'token-expiry':
      return { tokenExpiry: { ttlMs: p ? durationMs(p, 'token-expiry') : 1000 } };
    case 'oversized':
      return { oversized: { bytes: p ? Number.parseInt(p, 10) : 5 * 1024 * 1024 } };
    case 'malformed':
      return { malformed: true };
    case 'garbage':
      return { garbage: true };
    case 'overloaded':
      return { overloaded: true };
    case 'reboot-loop':
      return { rebootLoop: { upMs: p ? durationMs(p, 'reboot-loop') : 3000, downMs: 2000 } };
    case 'old-api':
      return { oldApi: true };
    case 'lost-reply':
      return { lostReply: true };
    case 'drop-writes':
      return { dropWrites: true };
  }
}

/**
 * Assigns the mix to miner indexes deterministically: each kind gets round(fraction × n) distinct
 * miners, chosen by a seeded shuffle, so `offline=2%` over 1,000 miners is exactly 20 miners.
 */
export function assignFaults(mix: FaultMixEntry[], minerCount: number, seed = 1): Map<number, MinerFaults> {
  const random = seededRandom(seed);
  const order = Array.from({ length: minerCount }, (_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j] as number, order[i] as number];
  }
  const result = new Map<number, MinerFaults>();
  let next = 0;
  for (const entry of mix) {
    const count = Math.round(entry.fraction * minerCount);
    for (let k = 0; k < count && next < order.length; k++, next++) {
      result.set(order[next] as number, faultFromEntry(entry));
    }
  }
  return result;
}

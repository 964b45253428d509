// Serializer wrappers that let a simulated miner send padded (oversized) or undecodable replies.
import type * as grpc from '@grpc/grpc-js';

/** A reply object carrying this key is sent as these raw bytes instead of being encoded. */
export const RAW_REPLY = Symbol('rawReply');
/** A reply object carrying this key gets that many bytes of an unknown field appended. */
export const PAD_REPLY = Symbol('padReply');

function varint(n: number): Buffer {
  const bytes: number[] = [];
  let v = n;
  while (v > 127) {
    bytes.push((v & 127) | 128);
    v = Math.floor(v / 128);
  }
  bytes.push(v);
  return Buffer.from(bytes);
}

const padding = new Map<number, Buffer>();

/**
 * An unknown length-delimited field (number 1999): decoders skip it, size limits still count it. Made
 * once per size, not for every reply (allocate, fill, copy 5 MiB): one of the costs that keep a simulator's one
 * event loop busy while the healthy miners it serves beside an oversized one wait (README, simulated faults).
 */
export function unknownField(bytes: number): Buffer {
  let field = padding.get(bytes);
  if (!field) {
    field = Buffer.concat([varint((1999 << 3) | 2), varint(bytes), Buffer.alloc(bytes, 0x61)]);
    if (padding.size >= 8) padding.clear();
    padding.set(bytes, field);
  }
  return field;
}

/** Bytes that are not a valid encoding of any message (a truncated varint on a bad wire type). */
export const MALFORMED_BYTES = Buffer.from([0x0f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

export function wrapServiceDefinition(def: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(def)) {
    const original = method.responseSerialize;
    out[name] = {
      ...method,
      responseSerialize: (value: unknown) => {
        const v = value as Record<symbol, unknown>;
        const raw = v[RAW_REPLY];
        if (Buffer.isBuffer(raw)) return raw;
        const pad = v[PAD_REPLY];
        const encoded = original(value);
        return typeof pad === 'number' ? Buffer.concat([encoded, unknownField(pad)]) : encoded;
      },
    };
  }
  return out as grpc.ServiceDefinition;
}

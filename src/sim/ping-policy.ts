// gRPC-core's keepalive enforcement, simulated: a miner that sees client PINGs more often than
// minPingIntervalMs (with no call traffic in between) counts strikes, and past maxPingStrikes
// answers GOAWAY ENHANCE_YOUR_CALM "too_many_pings" and closes the connection.
import { Duplex } from 'node:stream';
import type net from 'node:net';

export interface PingPolicy {
  minPingIntervalMs: number;
  maxPingStrikes: number;
}

export interface PingStats {
  pings: number;
  strikes: number;
  goaways: number;
}

const PREFACE_BYTES = 24;
const FRAME_DATA = 0x0;
const FRAME_HEADERS = 0x1;
const FRAME_PING = 0x6;
const FLAG_ACK = 0x1;
const ENHANCE_YOUR_CALM = 0xb;

function goawayFrame(): Buffer {
  const debug = Buffer.from('too_many_pings');
  const header = Buffer.alloc(9);
  header.writeUIntBE(8 + debug.length, 0, 3);
  header[3] = 0x7; // GOAWAY
  const payload = Buffer.alloc(8);
  payload.writeUInt32BE(0, 0); // last stream id
  payload.writeUInt32BE(ENHANCE_YOUR_CALM, 4);
  return Buffer.concat([header, payload, debug]);
}

/** Wraps an accepted socket so the HTTP/2 frames the client sends can be watched. */
export function policedConnection(socket: net.Socket, policy: PingPolicy, stats: PingStats): Duplex {
  let pending = Buffer.alloc(0);
  let prefaceLeft = PREFACE_BYTES;
  let lastPingAt = 0;
  let trafficSincePing = true;
  let strikes = 0;
  let closing = false;

  const duplex = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      if (closing) return cb();
      socket.write(chunk, cb);
    },
    final(cb) {
      socket.end(cb);
    },
    destroy(err, cb) {
      socket.destroy();
      cb(err);
    },
  });

  const inspect = (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    if (prefaceLeft > 0) {
      const skip = Math.min(prefaceLeft, pending.length);
      pending = pending.subarray(skip);
      prefaceLeft -= skip;
    }
    while (pending.length >= 9) {
      const length = pending.readUIntBE(0, 3);
      if (pending.length < 9 + length) break;
      const type = pending[3];
      const flags = pending[4] ?? 0;
      pending = pending.subarray(9 + length);
      if (type === FRAME_HEADERS || type === FRAME_DATA) trafficSincePing = true;
      if (type !== FRAME_PING || flags & FLAG_ACK) continue;
      stats.pings++;
      const now = Date.now();
      if (lastPingAt !== 0 && !trafficSincePing && now - lastPingAt < policy.minPingIntervalMs) {
        strikes++;
        stats.strikes++;
      }
      lastPingAt = now;
      trafficSincePing = false;
      if (strikes > policy.maxPingStrikes && !closing) {
        closing = true;
        stats.goaways++;
        socket.end(goawayFrame());
      }
    }
  };

  socket.on('data', (chunk: Buffer) => {
    inspect(chunk);
    if (!duplex.push(chunk)) socket.pause();
  });
  socket.on('end', () => duplex.push(null));
  socket.on('close', () => duplex.destroy());
  socket.on('error', (err) => duplex.destroy(err));
  return duplex;
}

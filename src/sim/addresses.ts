// Loopback addresses for simulated miners: 127.1.0.1, 127.1.0.2, … skipping .0 and .255 like a farm's DHCP range.
import net from 'node:net';

export function ipToInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`address: "${ip}" is not an IPv4 address`);
  }
  return ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!;
}

export function intToIp(n: number): string {
  return [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function isLoopback(host: string): boolean {
  return (net.isIPv4(host) && host.startsWith('127.')) || host === '::1' || host === 'localhost';
}

/** `count` loopback addresses from `base` upwards. Refuses anything outside 127.0.0.0/8. */
export function loopbackAddresses(base: string, count: number): string[] {
  if (!base.startsWith('127.')) throw new Error(`sim: --base must be a loopback address (127.x.y.z), got "${base}"`);
  const out: string[] = [];
  let n = ipToInt(base);
  while (out.length < count) {
    const last = n & 255;
    if (last !== 0 && last !== 255) out.push(intToIp(n));
    n++;
    if (((n >>> 24) & 255) !== 127) throw new Error(`sim: ${count} addresses from ${base} leave 127.0.0.0/8`);
  }
  return out;
}

/**
 * A miner's listen that failed because its address is taken, or is no address of this host (macOS and
 * the BSDs answer only on 127.0.0.1 unless told; Linux on all of 127.0.0.0/8), said with what to do;
 * other errors as they are.
 */
export function listenProblem(err: unknown): unknown {
  const e = err as (NodeJS.ErrnoException & { address?: string; port?: number }) | undefined;
  const where = `${e?.address ?? '?'}:${e?.port ?? '?'}`;
  if (e?.code === 'EADDRNOTAVAIL') {
    return new Error(
      `sim: cannot listen on ${where}: this host has no such loopback address. The simulator gives every miner its own 127.x.y.z address, as a farm gives each its own IP; Linux answers on all of 127.0.0.0/8, macOS and the BSDs only on 127.0.0.1 unless each address is added (macOS: sudo ifconfig lo0 alias ${e?.address ?? '127.x.y.z'} up, for every address used). Run it on Linux (a container or VM will do), or add the addresses`,
    );
  }
  if (e?.code !== 'EADDRINUSE') return err;
  return new Error(`sim: ${where} is already in use (another \`bos-fleet sim\` or demo on these addresses?): pass --base with another loopback range, e.g. --base 127.200.0.1`);
}

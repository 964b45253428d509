// One TCP listener per simulated miner address; accepted sockets go to the shared gRPC server
// unless the miner's faults say otherwise (blackhole, non-gRPC bytes, nothing listening).
import net from 'node:net';
import type { MinerFaults } from './faults.js';

export interface MinerEndpoint {
  host: string;
  port: number;
  listener?: net.Server;
  sockets: Set<net.Socket>;
  /** True while the miner is rebooting: nothing listens. */
  down: boolean;
}

export type InjectFn = (socket: net.Socket) => void;


export function createEndpoint(host: string, port: number): MinerEndpoint {
  return { host, port, sockets: new Set(), down: false };
}

function onConnection(ep: MinerEndpoint, faults: () => MinerFaults, inject: InjectFn, socket: net.Socket): void {
  ep.sockets.add(socket);
  socket.on('close', () => ep.sockets.delete(socket));
  socket.on('error', () => socket.destroy());
  const f = faults();
  if (f.blackhole) {
    socket.pause(); // accept, never read, never answer
    return;
  }
  if (f.garbage) {
    socket.end('SSH-2.0-OpenSSH_9.2p1 Debian-2\r\nProtocol mismatch.\r\n');
    return;
  }
  inject(socket);
}

/** Makes the listener match the faults: listening unless refused or down. */
export async function reconcileListener(ep: MinerEndpoint, faults: () => MinerFaults, inject: InjectFn): Promise<void> {
  const shouldListen = !faults().refuse && !ep.down;
  if (shouldListen && !ep.listener) {
    const server = net.createServer((s) => onConnection(ep, faults, inject, s));
    ep.listener = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: ep.host, port: ep.port, backlog: 511 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } else if (!shouldListen && ep.listener) {
    const server = ep.listener;
    ep.listener = undefined;
    dropSockets(ep);
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

/** Resets every open connection of the miner (the client sees ECONNRESET / "Connection dropped"). */
export function dropSockets(ep: MinerEndpoint): void {
  for (const s of ep.sockets) s.resetAndDestroy();
  ep.sockets.clear();
}

// grpc-js channel options for miner channels, derived from the core options.
import { isIP } from 'node:net';
import type * as grpc from '@grpc/grpc-js';
import type { CoreOptions } from './options.js';
import type { TlsMaterial } from './tls.js';

export function minerChannelOptions(opts: CoreOptions, tlsMaterial?: TlsMaterial): grpc.ChannelOptions {
  return {
    // Retries belong to src/core/retry.ts alone: one attempt here is one request on the wire.
    'grpc.enable_retries': 0,
    'grpc.enable_channelz': 0,
    'grpc.max_receive_message_length': opts.maxReceiveBytes,
    'grpc.max_send_message_length': opts.maxReceiveBytes,
    // Pings no more often than gRPC-core servers accept, and never on idle connections
    // (they would answer GOAWAY ENHANCE_YOUR_CALM "too_many_pings").
    'grpc.keepalive_time_ms': opts.pool.keepaliveTimeMs,
    'grpc.keepalive_timeout_ms': opts.pool.keepaliveTimeoutMs,
    'grpc.keepalive_permit_without_calls': 0,
    'grpc.client_idle_timeout_ms': opts.pool.idleTtlMs,
    // Quick reconnects: a rebooted miner is usable again within a retry's backoff.
    'grpc.initial_reconnect_backoff_ms': 250,
    'grpc.max_reconnect_backoff_ms': 5_000,
    // Each miner channel has its own subchannel: closing one never disturbs another.
    'grpc.use_local_subchannel_pool': 1,
    // A miner named by hostname is looked up for its addresses only: grpc-js would also ask DNS for
    // a TXT service config on every resolution (a query per miner per poll to the farm's DNS, and a
    // way for DNS to change these channels' settings). Miners publish none.
    'grpc.service_config_disable_resolution': 1,
    ...(tlsMaterial?.serverName ? { 'grpc.ssl_target_name_override': tlsMaterial.serverName } : {}),
  };
}

/** A miner's address as people write it: `10.0.0.5:50051`, `[fd00::5]:50051` (an IPv6 address in brackets). */
export function hostPort(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The grpc-js target for a miner. IP literals (a farm's usual inventory) use grpc-js's ipv4:/ipv6:
 * resolver: the default DNS resolver would build a c-ares resolver per channel for an address that
 * needs no lookup (~0.15 ms of CPU each). Hostnames are resolved by DNS as before.
 */
export function grpcTarget(host: string, port: number): string {
  switch (isIP(host)) {
    case 4:
      return `ipv4:${host}:${port}`;
    case 6:
      return `ipv6:${hostPort(host, port)}`;
    default:
      return `${host}:${port}`;
  }
}

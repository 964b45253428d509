// The one closed set of outcome error codes, with what each means for retries and what to do about it.

export const ERROR_CODES = [
  'MINER_UNREACHABLE',
  'MINER_TIMEOUT',
  'CONNECTION_LOST',
  'PROTOCOL_ERROR',
  'RESPONSE_TOO_LARGE',
  'MINER_AUTH_FAILED',
  'MINER_PERMISSION_DENIED',
  'UNSUPPORTED_BY_FIRMWARE',
  'INVALID_REQUEST',
  'MINER_OVERLOADED',
  'CIRCUIT_OPEN',
  'TLS_ERROR',
  'OUTCOME_UNKNOWN',
  'VERIFY_MISMATCH',
  'INVALID_JOB',
  'MINER_IDENTITY_MISMATCH',
  'CANCELLED',
  'WORKER_OUT_OF_RESOURCES',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

interface CodeInfo {
  /** Worth trying again later (in-call for reads, job-level for all). */
  retryable: boolean;
  /** A failure of the miner or the path to it: counts toward the miner's circuit breaker. */
  minerFault: boolean;
  suggestion: string;
}

export const CODE_INFO: Record<ErrorCode, CodeInfo> = {
  MINER_UNREACHABLE: {
    retryable: true,
    minerFault: true,
    suggestion: 'Nothing answers on the miner\'s gRPC port (or it closes the connection at once, as a miner that serves TLS only does without --tls), or its host name does not resolve: check it is powered, on the network, that the IP or host name in the inventory is current (and resolves on the worker\'s host), and that port 50051 is open.',
  },
  MINER_TIMEOUT: {
    retryable: true,
    minerFault: true,
    suggestion: 'The miner did not answer in time: it may be overloaded, frozen, or packets are being dropped. Check it and the network path; raise --timeout-ms only if the miner is merely slow.',
  },
  CONNECTION_LOST: {
    retryable: true,
    minerFault: true,
    suggestion: 'The connection dropped mid-call (the miner restarted or the network reset it). Usually transient; if it repeats, check the miner\'s uptime and the switch.',
  },
  PROTOCOL_ERROR: {
    retryable: false,
    minerFault: true,
    suggestion: 'Something other than the Braiins OS gRPC API answered (or its reply was malformed): check the IP belongs to a Braiins OS miner and the port is 50051.',
  },
  RESPONSE_TOO_LARGE: {
    retryable: false,
    minerFault: false,
    suggestion: 'The miner\'s reply exceeded the receive limit (512 KiB unless set): check the firmware; if the reply is legitimate, raise --max-receive-bytes of `bos-fleet poll` / `bos-fleet worker` (up to 4 MiB).',
  },
  MINER_AUTH_FAILED: {
    retryable: false,
    minerFault: false,
    suggestion: 'Login was refused: check the username and password of the miner\'s credentials profile.',
  },
  MINER_PERMISSION_DENIED: {
    retryable: false,
    minerFault: false,
    suggestion: 'The miner refused this action for these credentials: use a profile with administrator rights.',
  },
  UNSUPPORTED_BY_FIRMWARE: {
    retryable: false,
    minerFault: false,
    suggestion: 'The miner\'s Braiins OS API version lacks this method: upgrade its firmware, or leave it out of this operation.',
  },
  INVALID_REQUEST: {
    retryable: false,
    minerFault: false,
    suggestion: 'The miner refused the value sent (out of its model\'s range, or malformed): check the operation\'s arguments against the miner\'s constraints.',
  },
  MINER_OVERLOADED: {
    retryable: true,
    minerFault: true,
    suggestion: 'The miner is refusing calls for lack of resources (busy: another tool polling it, or a firmware task): bos-fleet already retried with backoff; try again later, and if many miners say so, look for what else is calling them.',
  },
  CIRCUIT_OPEN: {
    retryable: true,
    minerFault: false,
    suggestion: 'Recent calls to this miner kept failing, so bos-fleet stopped calling it for a while: fix the underlying fault; calls resume automatically after the cool-down.',
  },
  TLS_ERROR: {
    retryable: false,
    minerFault: false,
    suggestion: 'The TLS handshake failed: check the --tls file\'s caFile, certFile and keyFile for this site, and its serverName (the name in the miner\'s certificate, needed when the inventory gives an IP).',
  },
  OUTCOME_UNKNOWN: {
    retryable: false,
    minerFault: false,
    suggestion: 'A change may or may not have been applied (the call was interrupted after it was sent): read the miner\'s state back before trying again.',
  },
  VERIFY_MISMATCH: {
    retryable: false,
    minerFault: false,
    suggestion: 'The miner accepted the change but reads back a different value: inspect it by hand (another tool or the miner itself may override the setting).',
  },
  INVALID_JOB: {
    retryable: false,
    minerFault: false,
    suggestion: 'The job itself is invalid (bad inventory row or operation arguments): fix the input and enqueue again.',
  },
  MINER_IDENTITY_MISMATCH: {
    retryable: false,
    minerFault: false,
    suggestion:
      "The machine at this address is not the miner the inventory names (its MAC address differs): the address was given to another machine (DHCP) or the machine was swapped. Nothing was changed on the machine that answered and none of its data is reported as the named miner's: find the miner's current address by its MAC and fix the inventory.",
  },
  CANCELLED: {
    retryable: false,
    minerFault: false,
    suggestion: 'The operation was cancelled before it finished.',
  },
  WORKER_OUT_OF_RESOURCES: {
    retryable: true,
    minerFault: false,
    suggestion:
      'The host running the worker ran out of what a new connection needs (open files: EMFILE/ENFILE; local ports: EADDRNOTAVAIL): the miner was not reached and nothing was sent. Raise the open-files limit (ulimit -n, systemd LimitNOFILE, the container\'s nofile) or lower the worker\'s --max-connections / --concurrency.',
  },
  INTERNAL: {
    retryable: false,
    minerFault: false,
    suggestion: 'An unexpected error inside bos-fleet: please report it with the outcome JSON.',
  },
};

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}

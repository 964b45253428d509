// A deadline timer that fires long after it was due says that this process did not run meanwhile
// (stopped, paused, swapping, starved of CPU), not that the miner was slow: its reply may be sitting
// unread in the socket, as Node runs due timers before it reads the sockets. Such a timeout is not
// counted against the miner (its breaker, its channel's health), and its message says so.
import { status as GrpcStatus } from '@grpc/grpc-js';
import { FleetError } from './fleet-error.js';

/** How late a deadline must fire to be taken as this process's stall rather than the miner's slowness. */
export const STALL_MS = 1_000;

/** `e`, marked as this process's stall (context.stalledMs) when it is a timeout seen STALL_MS or more after `dueAt` (performance.now()). */
export function blameStall(e: FleetError, dueAt: number): FleetError {
  const timeout = e.code === 'MINER_TIMEOUT' || (e.code === 'OUTCOME_UNKNOWN' && e.context.grpcCode === GrpcStatus.DEADLINE_EXCEEDED);
  const lateMs = performance.now() - dueAt;
  if (!timeout || !(lateMs >= STALL_MS)) return e;
  const why = `this worker did not run for ${(lateMs / 1_000).toFixed(1)} s past the deadline (stopped, paused, swapping or starved of CPU): not counted against the miner`;
  return new FleetError(e.code, `${e.message} (${why})`, { ...e.context, stalledMs: Math.round(lateMs) });
}

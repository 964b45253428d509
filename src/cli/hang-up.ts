// A command whose terminal hangs up (SIGHUP: an ssh session dropped) or whose output pipe closes.
// A long-running one (a worker, a poll) stops cleanly — its jobs in flight finish — instead of dying
// with them. When its terminal is gone it then ends as the hang-up would have ended it, by SIGHUP:
// Node's own exit resets the terminal and aborts when it cannot (Node 20, nodejs/node#51519).
import { isatty } from 'node:tty';

let onOutputLost: (() => void) | undefined;
/** The standard streams that were a terminal at start-up. */
const terminals = [0, 1, 2].filter((fd) => isatty(fd));

/** A long-running command's clean stop for when its output goes away (a closed pipe, a hung-up terminal); undefined: none. */
export function whenOutputLost(stop: (() => void) | undefined): void {
  onOutputLost = stop;
}

/**
 * Its stdout or stderr failed with EPIPE / EIO: whether the command goes on. One that said how to stop
 * cleanly ({@link whenOutputLost}: a worker finishing its jobs in flight; the stop is idempotent) is
 * told, at every failed write, and goes on without its output; any other ends (`results RUN | head`).
 */
export function outputLost(): boolean {
  onOutputLost?.();
  return onOutputLost !== undefined;
}

/** When a terminal it started on has hung up (no longer a terminal), ends the process by SIGHUP and returns true. */
export function exitAfterHangUp(): boolean {
  if (!terminals.some((fd) => !isatty(fd))) return false;
  process.removeAllListeners('SIGHUP');
  process.kill(process.pid, 'SIGHUP');
  return true;
}

/**
 * Ends the process now with `code`, instead of when nothing is left open (a worker whose queue
 * connections never closed after a Redis outage, a connection waiting for Redis): by SIGHUP when its
 * terminal hung up (see exitAfterHangUp).
 */
export function exitNow(code: number): void {
  if (!exitAfterHangUp()) process.exit(code);
}

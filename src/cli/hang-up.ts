// A command whose terminal hangs up (SIGHUP: an ssh session dropped) or whose output pipe closes.
// A long-running one (a worker, a poll) stops cleanly — its jobs in flight finish — instead of dying
// with them. When its terminal is gone it then ends as the hang-up would have ended it, by SIGHUP:
// Node's own exit resets the terminal and aborts when it cannot (Node 20, nodejs/node#51519).
import { writeSync } from 'node:fs';
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

/** Write errors of an output whose storage is full: the disk (or quota, or file size limit) it goes to. */
const FULL = new Set(['ENOSPC', 'EDQUOT', 'EFBIG']);
/** How often a long-running command whose output is full tries to say how much of it was lost. */
export const FULL_RETRY_MS = 10_000;
let full: { fd: number; code: string; lines: number; retry?: NodeJS.Timeout } | undefined;

/**
 * Its stdout (fd 1) or stderr (fd 2) failed with `code`; returns false when that is not a full
 * output. A command whose output is its work (`results`, `runs`) stops at once with 1, saying so on
 * its other stream. A long-running one (a worker: {@link whenOutputLost}) goes on without the lines —
 * its work matters more than its log, and a log disk filling up must not stop polling or cut a change
 * short — and, once it can write again, says how many lines were lost. It then ends with 1, if it
 * would have ended with 0, as long as that was not said.
 */
export function outputFull(fd: number, code: string | undefined): boolean {
  if (!code || !FULL.has(code)) return false;
  const other = fd === 1 ? 2 : 1;
  const what = `${code}: the disk it goes to is full, or its quota or file size limit reached`;
  if (!onOutputLost) {
    tryWrite(other, `bos-fleet: cannot write its ${fd === 1 ? 'output' : 'messages'} (${what})\n`);
    process.exit(1);
  }
  if (!full) {
    full = { fd, code, lines: 0 };
    tryWrite(other, `bos-fleet: its ${fd === 1 ? 'output' : 'messages'} cannot be written (${what}): it goes on without them, and says how many lines were lost once it can write again\n`);
    process.on('exit', () => {
      if (full && !process.exitCode) process.exitCode = 1;
    });
  }
  full.lines++;
  full.retry ??= setTimeout(sayLost, FULL_RETRY_MS).unref();
  return true;
}

function sayLost(): void {
  if (!full) return;
  full.retry = undefined;
  if (tryWrite(full.fd, `bos-fleet: ${full.lines} line${full.lines === 1 ? '' : 's'} of its ${full.fd === 1 ? 'output' : 'messages'} could not be written (${full.code}) and ${full.lines === 1 ? 'is' : 'are'} lost\n`)) full = undefined;
  else full.retry = setTimeout(sayLost, FULL_RETRY_MS).unref();
}

function tryWrite(fd: number, text: string): boolean {
  try {
    writeSync(fd, text);
    return true;
  } catch {
    return false;
  }
}

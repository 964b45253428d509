// Option parsers for the CLI: each error names the option and the bad value.
import { InvalidArgumentError } from 'commander';
import { MAX_TIMEOUT_MS, MIN_TIMEOUT_MS } from '../fleet/job.js';

/** A whole number written in digits (Number() would also take 1e3, 0x10, 1_000 or an empty string as 0). */
const digits = (value: string): number => (/^\d+$/.test(value) ? Number(value) : NaN);

export function positiveInt(name: string) {
  return (value: string): number => {
    const n = digits(value);
    if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got "${value}"`);
    return n;
  };
}

export function intInRange(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = digits(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}, got "${value}"`);
    return n;
  };
}

/** `--timeout-ms` of `poll` and `schedule add`: a per-attempt deadline a run can live with. */
export const timeoutMsOption = intInRange('--timeout-ms', MIN_TIMEOUT_MS, MAX_TIMEOUT_MS);

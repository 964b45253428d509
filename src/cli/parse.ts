// Option parsers for the CLI: each error names the option and the bad value.
import { InvalidArgumentError } from 'commander';
import { MAX_TIMEOUT_MS, MIN_TIMEOUT_MS } from '../fleet/job.js';

/** A whole number written in digits (Number() would also take 1e3, 0x10, 1_000 or an empty string as 0). */
export const digits = (value: string): number => (/^\d+$/.test(value) ? Number(value) : NaN);

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

/**
 * `--prefix`: the Redis key prefix of a farm's keys. Letters, digits and `{}_.:-` only, 1 to 64 of
 * them: the CLI prints the prefix back in commands to copy and run (`--prefix '…'`), which a quote
 * or a space would break, and an empty one would leave a farm's keys unnamed (`:jobs:wait`).
 */
export function prefixOption(value: string): string {
  if (!/^[A-Za-z0-9{}_.:-]{1,64}$/.test(value)) throw new InvalidArgumentError(`--prefix must be 1 to 64 letters, digits or {}_.:- characters (default "{bosfleet}"), got "${value}"`);
  return value;
}

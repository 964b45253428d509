// Flags of the npm-run scripts (`npm run bench`, `npm run chaos`): a bad value is refused before
// anything starts, naming the flag and the value, with the script's usage, and exit code 2.
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A bad flag or flag value: the message names the flag and the value. */
export class UsageError extends Error {}

type Flags<O extends NonNullable<ParseArgsConfig['options']>> = ReturnType<typeof parseArgs<{ args: string[]; strict: true; options: O }>>['values'];

/** node:util's parseArgs (strict), its errors as UsageError. */
export function parseFlags<O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O): Flags<O> {
  try {
    return parseArgs({ args: argv, strict: true, options }).values;
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** `value` of `--flag` as a whole number from `min` to `max`. */
export function wholeNumber(flag: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${flag} must be a whole number from ${min} to ${max}, got "${value}"`);
  return n;
}

/** `parse()`, or, on a UsageError, `<script>: <message>` and the usage on stderr and exit 2. */
export function parsedOrExit<T>(script: string, usage: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`${script}: ${err.message}\n\n${usage}`);
    process.exit(2);
  }
}

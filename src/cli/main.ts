// The bos-fleet command line.
import { Command, CommanderError } from 'commander';
import { registerAudit } from './audit-command.js';
import { registerDemo } from './demo-command.js';
import { registerPoll } from './poll-command.js';
import { registerRollout } from './rollout-command.js';
import { registerRuns } from './runs-command.js';
import { registerSchedule } from './schedule-command.js';
import { registerSim } from './sim-command.js';
import { registerWorker } from './worker-command.js';
import { registerWatch } from './watch-command.js';
import { redisRefusal, redisRefusalAdvice } from '../redis/durability.js';
import { isConnectionDrop } from '../redis/connection-drop.js';
import { exitAfterHangUp, outputFull, outputLost } from './hang-up.js';
import { RedisUnreachableError } from './connect-redis.js';

/**
 * What commander's "too many arguments" most often means here: a value with spaces given unquoted (a
 * cron pattern above all, whose * the shell also turns into file names).
 */
function excessArgumentsHint(argv: readonly string[]): string {
  return argv.includes('--cron')
    ? 'a --cron pattern is one argument, in quotes: --cron "0 14 * * *" (unquoted, the shell splits it and turns each * into file names)'
    : 'a value with spaces must be in quotes';
}

const program = new Command('bos-fleet')
  .description('Fleet executor for Braiins OS mining farms: polls, config pushes and staged rollouts')
  .version('0.1.0')
  .showHelpAfterError('(add --help for usage)')
  // Set before the commands are added, which inherit it.
  .configureOutput({
    outputError: (text, write) => write(/^error: too many arguments/.test(text) ? `${text.trimEnd()} — ${excessArgumentsHint(process.argv)}\n` : text),
  });

registerDemo(program);
registerPoll(program);
registerWatch(program);
registerWorker(program);
registerRuns(program);
registerRollout(program);
registerAudit(program);
registerSchedule(program);
registerSim(program);

// A reader that stops early (`bos-fleet results RUN | head`) or a terminal that hangs up ends the
// command quietly, not with a trace — except a worker, which first finishes its jobs in flight. A
// full disk under its output does not crash a worker either (outputFull).
for (const [fd, out] of [process.stdout, process.stderr].entries()) {
  out.on('error', (err: NodeJS.ErrnoException) => {
    if (outputFull(fd + 1, err.code)) return;
    if (err.code !== 'EPIPE' && err.code !== 'EIO') throw err;
    if (!outputLost() && !exitAfterHangUp()) process.exit(0);
  });
}

program.parseAsync(process.argv).then(exitAfterHangUp, (err: unknown) => {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  // A transaction Redis refused part of says only EXECABORT: the refusal is its first previous error.
  const cause = (err as { previousErrors?: Error[] } | null)?.previousErrors?.[0];
  const message = cause?.message ?? (err instanceof Error ? err.message : String(err));
  // Redis refusing a write (full, cannot save, a replica) or the ACL user's command: its bare reply, with what to do about it.
  const kind = redisRefusal(message);
  const refused = kind ? ` — Redis refused ${kind === 'NOPERM' ? 'the command' : 'a write'}. ${redisRefusalAdvice(message)}` : '';
  // Redis gone in the middle of a command (its bare "Command aborted due to connection close"); an
  // enqueue cut off mid-run says what to do itself ("run …: Redis stayed unreachable …"), and so does
  // a command whose Redis never took its connection (nothing of it can have got in).
  const dropped = !refused && !(err instanceof RedisUnreachableError) && isConnectionDrop(err) && !/^run \S+: Redis/.test(message) ? ` — the connection to Redis closed under it (Redis stopped, restarted or unreachable): once Redis runs, \`bos-fleet runs\` and \`bos-fleet rollout status\` show what got in before running it again` : '';
  console.error(`bos-fleet: ${message}${refused}${dropped}`);
  // An error may carry its own exit code (130: interrupted).
  const code = err instanceof Error && 'exitCode' in err && typeof err.exitCode === 'number' ? err.exitCode : 1;
  if (!exitAfterHangUp()) process.exit(code);
});

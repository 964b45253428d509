// The bos-fleet command line.
import { Command, CommanderError } from 'commander';
import { registerSim } from './sim-command.js';

const program = new Command('bos-fleet')
  .description('Fleet executor for Braiins OS mining farms: polls, config pushes and staged rollouts')
  .version('0.1.0')
  .showHelpAfterError();

registerSim(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  console.error(`bos-fleet: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});

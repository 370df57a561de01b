#!/usr/bin/env node
// The `ctsync` command line: yargs root; each command lives in its own thin module.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { ctCommand } from './ct.js';
import { daemonCommand } from './daemon.js';
import { controlCommands } from './control.js';
import { keygenCommand } from './keygen.js';
import { notifyCommand, notifyFifoCommand } from './notify.js';
import { doctorCommand } from './doctor.js';
import { labCommand } from './lab.js';
import { Exit, CliError } from './exit.js';

// `ctsync dump | head`: the reader went away, which ends the command, not with a stack trace
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(Exit.Ok);
});

const cli = yargs(hideBin(process.argv))
  .scriptName('ctsync')
  .command(ctCommand)
  .command(daemonCommand)
  .command(controlCommands)
  .command(keygenCommand)
  .command(notifyCommand)
  .command(notifyFifoCommand)
  .command(doctorCommand)
  .command(labCommand)
  .demandCommand(1, 'Name a command: ctsync --help lists them.')
  .strict()
  .recommendCommands()
  .help()
  .version()
  .fail((msg, err) => {
    if (err) throw err;
    process.stderr.write(`ctsync: ${msg}\nRun 'ctsync --help' (or 'ctsync <command> --help') for usage.\n`);
    process.exit(Exit.Usage);
  });

try {
  await cli.parseAsync();
} catch (err) {
  if (err instanceof CliError) {
    process.stderr.write(`ctsync: ${err.message}\n`);
    process.exit(err.exitCode);
  }
  const e = err as Error & { code?: string };
  process.stderr.write(`ctsync: ${e.code ? `${e.code}: ` : ''}${e.message}\n`);
  process.exit(Exit.Failure);
}

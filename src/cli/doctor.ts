// `ctsync doctor`: check this node's setup (sysctls, event buffer, config, key, keepalived wiring, ruleset, daemon) and say what to fix.
import type { CommandModule } from 'yargs';
import { doctorExitCode, renderReport } from '../doctor/checks.js';
import { DEFAULT_CONFIG, DEFAULT_KEEPALIVED, runDoctor } from '../doctor/probe.js';

export const doctorCommand: CommandModule = {
  command: 'doctor',
  describe: "check this node's setup and say what to fix (exit 1 if a check fails)",
  builder: (y) =>
    y
      .option('config', { type: 'string', alias: 'c', describe: `config file (default ${DEFAULT_CONFIG}; its absence is a warning)` })
      .option('netns', { type: 'string', describe: 'network namespace to check (default: kernel.netns, else ours)' })
      .option('keepalived', { type: 'string', default: DEFAULT_KEEPALIVED, describe: 'keepalived.conf to check for the ctsync wiring' })
      .option('socket', { type: 'string', describe: "the daemon's control socket (default: control.socket)" })
      .option('json', { type: 'boolean', default: false, describe: 'print the report as one JSON document' }),
  handler: async (argv) => {
    const report = await runDoctor({
      config: argv.config as string | undefined,
      netns: argv.netns as string | undefined,
      keepalived: argv.keepalived as string,
      socket: argv.socket as string | undefined,
    });
    process.stdout.write(argv.json ? `${JSON.stringify(report, null, 2)}\n` : renderReport(report));
    process.exitCode = doctorExitCode(report);
  },
};

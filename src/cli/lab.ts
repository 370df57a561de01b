// `ctsync lab`: builds a throwaway HA firewall lab in network namespaces and narrates a failover and a failback.
import { fileURLToPath } from 'node:url';
import type { CommandModule } from 'yargs';
import { demoPrerequisites, runDemo } from '../lab/demo.js';
import { CliError, Exit } from './exit.js';

export const labCommand: CommandModule = {
  command: 'lab',
  describe: 'watch a TCP and a UDP stream survive a firewall failover: a throwaway lab in network namespaces (root)',
  builder: (y) =>
    y
      .option('advert-int', { type: 'number', default: 0.2, describe: 'VRRP advert interval in seconds (0.01-40.95); takeover takes ~3-4 adverts' })
      .option('keep', { type: 'boolean', default: false, describe: 'leave the lab running after the run until Ctrl-C' })
      .option('sync', { type: 'boolean', default: true, describe: 'run ctsync on the firewalls; --no-sync is the control run, where the TCP stream dies' })
      .check((a) => {
        const v = a['advert-int'] as number;
        if (!(v >= 0.01 && v <= 40.95) || Math.abs(Math.round(v * 100) - v * 100) > 1e-6) throw new Error('--advert-int must be 0.01-40.95 in steps of 0.01');
        return true;
      }),
  handler: async (argv) => {
    const why = demoPrerequisites();
    if (why) throw new CliError(why, Exit.Failure, 'CTS_ERR_LAB_PREREQ');
    process.exitCode = await runDemo({
      bin: fileURLToPath(new URL('./main.js', import.meta.url)),
      advertIntSec: argv['advert-int'] as number,
      keep: argv.keep as boolean,
      sync: argv.sync as boolean,
    });
  },
};

// `ctsync keygen`: a fresh pre-shared cluster key (32 random bytes, hex), written with mode 0600.
import { randomBytes } from 'node:crypto';
import { writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type { CommandModule } from 'yargs';
import { CliError, Exit } from './exit.js';

export const keygenCommand: CommandModule = {
  command: 'keygen [file]',
  describe: 'create a pre-shared cluster key (copy the same file to every node)',
  builder: (y) => y.positional('file', { type: 'string', describe: 'where to write it (default: print to stdout)' }).option('force', { type: 'boolean', default: false }),
  handler: (argv) => {
    const key = `${randomBytes(32).toString('hex')}\n`;
    const file = argv.file as string | undefined;
    if (!file) return void process.stdout.write(key);
    if (existsSync(file) && !argv.force) throw new CliError(`${file} exists; pass --force to replace it (every node must then get the new key)`, Exit.Usage);
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeFileSync(file, key, { mode: 0o600 });
    process.stdout.write(`wrote a new cluster key to ${file} (mode 0600)\n`);
  },
};

// `ctsync daemon`: load and check the config, then run in the foreground until SIGTERM/SIGINT (SIGHUP is ignored).
import type { Argv, CommandModule } from 'yargs';
import { loadConfig, ConfigError } from '../config/load.js';
import { SCHEMA, type KeySpec } from '../config/schema.js';
import { Daemon } from '../daemon/daemon.js';
import { createLogger } from '../daemon/log.js';
import { CliError, Exit } from './exit.js';

const FLAGS = (Object.entries(SCHEMA) as [string, KeySpec][]).filter(([, s]) => s.flag);

export const daemonCommand: CommandModule = {
  command: 'daemon',
  describe: 'run the sync daemon in the foreground',
  builder: (y: Argv) => {
    let out = y.option('config', { type: 'string', alias: 'c', describe: 'YAML config file (see systemd/ctsync.example.yaml)' });
    for (const [key, spec] of FLAGS) out = out.option(spec.flag!, { type: spec.type === 'peers' ? 'array' : 'string', describe: `${spec.doc} (config: ${key})` });
    return out;
  },
  handler: async (argv) => {
    const overrides: Record<string, unknown> = {};
    for (const [key, spec] of FLAGS) {
      const v = argv[spec.flag!];
      if (v !== undefined) overrides[key] = v;
    }
    let cfg;
    try {
      cfg = loadConfig(argv.config as string | undefined, overrides);
    } catch (err) {
      if (err instanceof ConfigError) throw new CliError(`${err.message}\nNothing was started.`, Exit.Config, err.code);
      throw err;
    }
    const log = createLogger(cfg.log.level, cfg.nodeId);
    // Node would exit on SIGHUP, and systemd counts that as a clean exit, so Restart=on-failure would leave the node
    // unsynced (and in FAULT) for good. Operators send HUP to reload; there is no reload, so say so and go on.
    process.on('SIGHUP', () => log.warn({ signal: 'SIGHUP' }, 'SIGHUP ignored: ctsync does not reload its config; restart it to apply a change (systemctl restart ctsync)'));
    let daemon: Daemon | undefined;
    try {
      daemon = new Daemon(cfg, log);
      await daemon.start();
    } catch (err) {
      log.fatal({ err }, 'startup failed');
      await daemon?.stop().catch(() => {});
      const e = err as Error & { code?: string };
      // the config check should catch every bad value first; one a lower layer still refuses is a config error too,
      // and so is a weak or world-readable key: no restart mends either (a missing file may yet appear: exit 1)
      const exit = e.code === 'CTS_ERR_CONFIG_INVALID' || e.code === 'CTS_ERR_KEY_WEAK' ? Exit.Config : Exit.Failure;
      throw new CliError(`startup failed: ${e.code ? `${e.code}: ` : ''}${e.message}`, exit);
    }
    const running = daemon;
    await new Promise<void>((resolve) => {
      const stop = (sig: string) => {
        log.info({ signal: sig }, 'stopping');
        void running.stop().finally(resolve);
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
  },
};

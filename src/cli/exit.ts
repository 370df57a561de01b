// Exit codes every ctsync command uses, and the error type that carries one.
export const enum Exit {
  Ok = 0,
  Failure = 1, // the command ran and failed (kernel error, failed writes, bad file content)
  Usage = 2, // misuse: unknown command, bad flag
  NotRunning = 3, // the daemon's control socket does not answer
  NotInSync = 4, // `ctsync stats --check`: the node is not in sync
  Config = 78, // EX_CONFIG: the configuration is invalid (systemd does not restart on it)
}

export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: Exit = Exit.Failure,
    readonly code = 'CTS_ERR_CLI',
  ) {
    super(message);
  }
}

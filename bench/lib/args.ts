// The kernel benchmarks' command line: `--name value` options and bare `--flag`s.
const argv = process.argv.slice(2);

/** The value after `name` on the command line, or undefined. */
export function opt(name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** Whether the bare `name` is on the command line. */
export function flag(name: string): boolean {
  return argv.includes(name);
}

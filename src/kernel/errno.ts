// errno numbers the kernel answers ctnetlink writes with, and their names for reports and counters.
import { constants } from 'node:os';

const byNumber = new Map<number, string>();
for (const [name, num] of Object.entries(constants.errno)) {
  if (!byNumber.has(num)) byNumber.set(num, name);
}

export const ENOENT = constants.errno.ENOENT;
export const EEXIST = constants.errno.EEXIST;
export const EBUSY = constants.errno.EBUSY;
export const EINVAL = constants.errno.EINVAL;
export const EOPNOTSUPP = constants.errno.EOPNOTSUPP;
export const ENOSPC = constants.errno.ENOSPC;
export const EINTR = constants.errno.EINTR;
export const ENOBUFS = constants.errno.ENOBUFS;
export const EAGAIN = constants.errno.EAGAIN;

/** 'EEXIST' for 17; 'E123' for numbers Node does not name. */
export function errnoName(errno: number): string {
  return byNumber.get(errno) ?? `E${errno}`;
}

export class KernelError extends Error {
  constructor(
    readonly errno: number,
    readonly op: string,
  ) {
    super(`${op} failed: ${errnoName(errno)}`);
    this.name = 'KernelError';
  }
  get code(): string {
    return `CTS_ERR_KERNEL_${errnoName(this.errno)}`;
  }
}

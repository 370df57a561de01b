// Test fixtures for the TCP/TLS transport: free loopback ports, throwaway PSK files and an openssl-made CA with
// one certificate per node, all in a temp dir removed by cleanup().

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A free port on 127.0.0.1 (the lab's helper, under the name these tests use). */
export { freeLoopbackPort as freePort } from '../../src/lab/redis-server.js';

export interface TempDir {
  dir: string;
  cleanup(): void;
}

export function tempDir(): TempDir {
  const dir = mkdtempSync(join(tmpdir(), 'ctsync-transport-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Writes a key file (mode 600) and returns its path. */
export function writeKeyFile(dir: string, name: string, content: string, mode = 0o600): string {
  const p = join(dir, name);
  writeFileSync(p, content, { mode });
  return p;
}

export function freshPskFile(dir: string, name = 'psk.hex'): string {
  return writeKeyFile(dir, name, `${randomBytes(32).toString('hex')}\n`);
}

export interface NodeCert {
  caFile: string;
  certFile: string;
  keyFile: string;
}

/** A throwaway CA and one certificate per node id (CN and DNS SAN = node id). */
export function makeCerts(dir: string, nodeIds: string[], caName = 'ca'): Record<string, NodeCert> {
  const ossl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  };
  const caKey = `${caName}.key`;
  const caCrt = `${caName}.crt`;
  ossl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', caKey, '-out', caCrt,
    '-days', '2', '-subj', `/CN=ctsync test ${caName}`);
  const out: Record<string, NodeCert> = {};
  for (const id of nodeIds) {
    const key = `${caName}-${id}.key`;
    const csr = `${caName}-${id}.csr`;
    const crt = `${caName}-${id}.crt`;
    const ext = `${caName}-${id}.ext`;
    writeFileSync(join(dir, ext), `subjectAltName=DNS:${id}\nextendedKeyUsage=serverAuth,clientAuth\n`);
    ossl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${id}`);
    ossl('x509', '-req', '-in', csr, '-CA', caCrt, '-CAkey', caKey, '-CAcreateserial', '-out', crt, '-days', '2', '-extfile', ext);
    out[id] = { caFile: join(dir, caCrt), certFile: join(dir, crt), keyFile: join(dir, key) };
  }
  return out;
}

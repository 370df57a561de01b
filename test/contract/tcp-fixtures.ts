// Test fixtures for the TCP/TLS transport: free loopback ports, throwaway PSK files and an openssl-made CA with
// one certificate per node, all in a temp dir removed by cleanup(); per-test scratch; a loopback relay.

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';

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

/**
 * Per-test scratch, undone after each test of the file that calls this at its top: a temp dir made on first use,
 * and whatever was deferred (last deferred, first undone).
 */
export function perTest(): { dir(): string; defer(...undo: Array<() => unknown>): void } {
  let d: TempDir | undefined;
  const undos: Array<() => unknown> = [];
  afterEach(async () => {
    for (const u of undos.splice(0).reverse()) await u();
    d?.cleanup();
    d = undefined;
  });
  return { dir: () => (d ??= tempDir()).dir, defer: (...undo) => void undos.push(...undo) };
}

/**
 * A loopback TCP relay from listenPort to targetPort, standing in for a sync link: on and off, and stall(), after
 * which it stops reading what the dialing side sends (a congested link, or a peer that stopped reading).
 */
export function loopbackRelay(listenPort: number, targetPort: number) {
  const sockets = new Set<net.Socket>();
  const pairs: [net.Socket, net.Socket][] = [];
  let server: net.Server | undefined;
  return {
    async on(): Promise<void> {
      server = net.createServer((c) => {
        const up = net.connect({ host: '127.0.0.1', port: targetPort });
        for (const s of [c, up]) {
          sockets.add(s);
          s.on('error', () => {});
          s.on('close', () => {
            sockets.delete(s);
            c.destroy();
            up.destroy();
          });
        }
        c.pipe(up);
        up.pipe(c);
        pairs.push([c, up]);
      });
      await new Promise<void>((r) => server!.listen(listenPort, '127.0.0.1', () => r()));
    },
    stall(): void {
      for (const [c, up] of pairs) (c.unpipe(up), c.pause());
    },
    unstall(): void {
      for (const [c, up] of pairs) c.pipe(up);
    },
    async off(): Promise<void> {
      for (const s of sockets) s.destroy();
      pairs.length = 0;
      if (server) await new Promise<void>((r) => server!.close(() => r()));
      server = undefined;
    },
  };
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

// The daemon reads its key material before anything starts, and names a bad file by its config key.
import { chmodSync, copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { buildConfig } from '../../../src/config/load.js';
import { Daemon } from '../../../src/daemon/daemon.js';
import { freshPskFile, makeCerts, tempDir, type TempDir } from '../../contract/tcp-fixtures.js';
import { cannotRun, runCtsync } from '../../helpers/env.js';

const silent = pino({ level: 'silent' });
const noCli = cannotRun([], true, false);
if (noCli) console.warn(`[start-keys] the CLI exit-code test is NOT RUN: ${noCli}`);
let dir: TempDir | undefined;
afterEach(() => {
  dir?.cleanup();
  dir = undefined;
});

/** The error `new Daemon` throws for this config, or undefined when it builds. */
function buildError(doc: Record<string, unknown>): (Error & { code?: string }) | undefined {
  try {
    new Daemon(buildConfig({ nodeId: 'fw-a', peers: [{ id: 'fw-b', addresses: ['127.0.0.1:9'] }], ...doc }), silent);
  } catch (err) {
    return err as Error & { code?: string };
  }
  return undefined;
}

describe('the daemon names bad key material by its config key', () => {
  test('psk mode: a missing key file is security.keyFile', () => {
    const err = buildError({ security: { keyFile: '/nonexistent/cluster.key' } });
    expect(err?.code).toBe('CTS_ERR_KEY_READ');
    expect(err?.message).toMatch(/^cannot read security\.keyFile \/nonexistent\/cluster\.key/);
  });

  test('cert mode: a missing, a world-readable or a mismatched file is named as security.ca, .cert or .key', () => {
    dir = tempDir();
    const good = makeCerts(dir.dir, ['fw-a'])['fw-a']!;
    const other = makeCerts(dir.dir, ['fw-a'], 'other')['fw-a']!;
    const cert = (files: typeof good) => ({ security: { mode: 'cert', ca: files.caFile, cert: files.certFile, key: files.keyFile } });
    expect(buildError(cert(good))).toBeUndefined();

    const missing = buildError(cert({ ...good, caFile: '/nonexistent/ca.pem' }));
    expect(missing?.code).toBe('CTS_ERR_KEY_READ');
    expect(missing?.message).toMatch(/^cannot read security\.ca \/nonexistent\/ca\.pem/);

    const open = join(dir.dir, 'open.key');
    copyFileSync(good.keyFile, open);
    chmodSync(open, 0o644);
    const weak = buildError(cert({ ...good, keyFile: open }));
    expect(weak?.code).toBe('CTS_ERR_KEY_WEAK');
    expect(weak?.message).toBe(`security.key ${open} is readable by every user; run chmod 600 on it`);

    // the certificate of one CA with the private key of another
    const pair = buildError(cert({ ...good, keyFile: other.keyFile }));
    expect(pair?.code).toBe('CTS_ERR_CONFIG_INVALID');
    expect(pair?.message).toMatch(/^security\.cert \/ security\.key \/ security\.ca do not form a usable TLS context/);
  });
});

describe.skipIf(noCli)('ctsync daemon exits before it starts anything', () => {
  test('a world-readable key exits 78 (a restart cannot mend it); a missing one exits 1 (it may yet appear)', async () => {
    dir = tempDir();
    const key = freshPskFile(dir.dir);
    chmodSync(key, 0o644);
    const conf = (name: string, keyFile: string) => {
      const file = `${dir!.dir}/${name}.yaml`;
      writeFileSync(file, `nodeId: fw-a\npeers: [{ id: fw-b, addresses: ["127.0.0.1:9"] }]\nsecurity: { keyFile: ${keyFile} }\ncontrol: { socket: ${dir!.dir}/c.sock }\nmetrics: { listen: "" }\n`);
      return file;
    };
    const weak = await runCtsync(['daemon', '--config', conf('weak', key)]);
    expect(weak.code).toBe(78);
    expect(weak.stderr).toContain(`CTS_ERR_KEY_WEAK: security.keyFile ${key} is readable by every user; run chmod 600 on it`);
    const missing = await runCtsync(['daemon', '--config', conf('missing', `${dir.dir}/absent.key`)]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`CTS_ERR_KEY_READ: cannot read security.keyFile ${dir.dir}/absent.key`);
  });
});

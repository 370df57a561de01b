// Security of the TCP peer link: no frame from a peer without the key, wrong cluster or plaintext; data before
// hello and oversize frames dropped; insecure mode warns; bad key material fails at start naming the option.

import { chmodSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { PSK_CIPHERS, TcpTransport, loadPsk, type TcpTransportOptions } from '../../../src/transport/tcp/index.js';
import { LinkFrame, encodeLinkFrame } from '../../../src/transport/tcp/framing.js';
import { LINK_PROTOCOL_VERSION, encodeHello } from '../../../src/transport/tcp/hello.js';
import { TransportError } from '../../../src/transport/types.js';
import { freePort, freshPskFile, makeCerts, tempDir, writeKeyFile, type TempDir } from '../../contract/tcp-fixtures.js';
import { record, waitFor } from '../../contract/transport-contract.js';
import { WARN, captureLogger } from './log-capture.js';

const FAST = { heartbeatMs: 100, deadAfterMs: 400, connectTimeoutMs: 1000, helloTimeoutMs: 500, backoff: { initialMs: 20, maxMs: 100 }, dialStaggerMs: 0 };

let dir: TempDir;
const running: TcpTransport[] = [];
const sockets: net.Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  for (const t of running.splice(0)) await t.stop();
  dir?.cleanup();
});

function transport(o: Partial<TcpTransportOptions> & Pick<TcpTransportOptions, 'nodeId' | 'peers'>): TcpTransport {
  const t = new TcpTransport({ clusterId: 'lab', listen: { host: '127.0.0.1', port: 0 }, ...FAST, ...o });
  running.push(t);
  return t;
}

/** A listening victim fw-b that knows fw-a as its peer (at an address where nobody listens). */
async function victim(security: Partial<Pick<TcpTransportOptions, 'tls' | 'insecure' | 'clusterId'>>, logger?: TcpTransportOptions['logger']) {
  const nowhere = await freePort();
  const b = transport({ nodeId: 'fw-b', peers: [{ nodeId: 'fw-a', addresses: [`127.0.0.1:${nowhere}`] }], ...security, ...(logger ? { logger } : {}) });
  const rb = record(b);
  await b.start();
  return { b, rb, port: b.address()!.port };
}

function attacker(port: number, o: Partial<TcpTransportOptions>): TcpTransport {
  return transport({ nodeId: 'fw-a', listen: { host: '127.0.0.1', port: 0 }, peers: [{ nodeId: 'fw-b', addresses: [`127.0.0.1:${port}`] }], ...o });
}

const sum = (r: Record<string, number>): number => Object.values(r).reduce((x, y) => x + y, 0);

describe('TLS-PSK', () => {
  it('a peer with the wrong key cannot deliver a single frame; the refusal is counted on both ends', async () => {
    dir = tempDir();
    const { b, rb, port } = await victim({ tls: { pskFile: freshPskFile(dir.dir, 'right.hex') } });
    const a = attacker(port, { tls: { pskFile: freshPskFile(dir.dir, 'wrong.hex') } });
    const ra = record(a);
    await a.start();
    // Keep trying to send while the attacker retries.
    await waitFor('three refusals at the victim', () => {
      a.send(Buffer.from('open port 22 to the world'));
      return (b.stats().refused.tls ?? 0) >= 3;
    });
    expect(a.stats().peers[0]!.refused.tls).toBeGreaterThanOrEqual(1);
    expect(rb.frames).toHaveLength(0);
    expect(rb.links.some((l) => l.state === 'up')).toBe(false);
    expect(ra.links.some((l) => l.state === 'up')).toBe(false);
    expect(b.stats().peers[0]!.framesIn).toBe(0);
    expect(a.stats().dropped.no_link).toBeGreaterThan(0);
  });

  it('a peer of another cluster (other PSK identity) is refused during the handshake', async () => {
    dir = tempDir();
    const pskFile = freshPskFile(dir.dir);
    const { b, rb, port } = await victim({ tls: { pskFile } });
    const a = attacker(port, { tls: { pskFile }, clusterId: 'other' });
    await a.start();
    await waitFor('refusal', () => (b.stats().refused.tls ?? 0) >= 1);
    expect(rb.frames).toHaveLength(0);
    expect(b.stats().peers[0]!.state).toBe('connecting');
  });

  it('data sent before the hello is never delivered, even inside a valid TLS-PSK session', async () => {
    dir = tempDir();
    const pskFile = freshPskFile(dir.dir);
    const { b, rb, port } = await victim({ tls: { pskFile } });
    const psk = loadPsk(pskFile);
    const s = tls.connect({ host: '127.0.0.1', port, ciphers: PSK_CIPHERS, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', checkServerIdentity: () => undefined, pskCallback: () => ({ psk, identity: 'lab' }) });
    sockets.push(s);
    s.on('error', () => {});
    await new Promise<void>((r) => s.once('secureConnect', () => r()));
    s.write(Buffer.concat(encodeLinkFrame(LinkFrame.Data, Buffer.from('sneaky'))));
    await waitFor('before_hello refusal', () => (b.stats().refused.before_hello ?? 0) === 1);
    expect(rb.frames).toHaveLength(0);
  });

  it('an oversize frame length drops the connection before buffering it', async () => {
    dir = tempDir();
    const pskFile = freshPskFile(dir.dir);
    const { b, rb, port } = await victim({ tls: { pskFile } });
    const psk = loadPsk(pskFile);
    const s = tls.connect({ host: '127.0.0.1', port, ciphers: PSK_CIPHERS, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', checkServerIdentity: () => undefined, pskCallback: () => ({ psk, identity: 'lab' }) });
    sockets.push(s);
    s.on('error', () => {});
    await new Promise<void>((r) => s.once('secureConnect', () => r()));
    const hello = encodeHello({ v: LINK_PROTOCOL_VERSION, minV: 1, cluster: 'lab', node: 'fw-a', boot: 1, seq: 1 });
    s.write(Buffer.concat(encodeLinkFrame(LinkFrame.Hello, hello)));
    await waitFor('link up from the raw client', () => rb.state('fw-a') === 'up');
    const header = Buffer.alloc(5);
    header.writeUInt32BE(1024 * 1024 * 1024, 0); // 1 GiB, far above maxFrameBytes
    header.writeUInt8(LinkFrame.Data, 4);
    s.write(header);
    await waitFor('link down after oversize frame', () => rb.state('fw-a') === 'down');
    expect(rb.links.at(-1)!.reason).toBe('too_large');
    expect(b.errorCounts('fw-a').too_large).toBe(1);
    expect(rb.frames).toHaveLength(0);
  });
});

describe('plaintext against a TLS listener', () => {
  it('a raw plaintext client sending a hello and data is refused and never delivers', async () => {
    dir = tempDir();
    const { b, rb, port } = await victim({ tls: { pskFile: freshPskFile(dir.dir) } });
    const s = net.connect({ host: '127.0.0.1', port });
    sockets.push(s);
    s.on('error', () => {});
    await new Promise<void>((r) => s.once('connect', () => r()));
    const hello = encodeHello({ v: LINK_PROTOCOL_VERSION, minV: 1, cluster: 'lab', node: 'fw-a', boot: 1, seq: 1 });
    s.write(Buffer.concat([...encodeLinkFrame(LinkFrame.Hello, hello), ...encodeLinkFrame(LinkFrame.Data, Buffer.from('x'))]));
    await waitFor('tls refusal', () => (b.stats().refused.tls ?? 0) === 1);
    expect(rb.frames).toHaveLength(0);
  });

  it('an insecure transport dialing a TLS one never comes up', async () => {
    dir = tempDir();
    const { b, rb, port } = await victim({ tls: { pskFile: freshPskFile(dir.dir) } });
    const a = attacker(port, { insecure: true });
    await a.start();
    await waitFor('two tls refusals', () => {
      a.send(Buffer.from('x'));
      return (b.stats().refused.tls ?? 0) >= 2;
    });
    expect(rb.frames).toHaveLength(0);
    expect(a.stats().peers[0]!.state).toBe('connecting');
  });
});

describe('mutual TLS', () => {
  it('a peer with the wrong cluster id is refused at hello, and the refusal is logged once, not per retry', async () => {
    dir = tempDir();
    const certs = makeCerts(dir.dir, ['fw-a', 'fw-b']);
    const { logger, lines } = captureLogger();
    const { b, rb, port } = await victim({ tls: certs['fw-b']! }, logger);
    const a = attacker(port, { tls: certs['fw-a']!, clusterId: 'other' });
    await a.start();
    await waitFor('three bad_cluster refusals', () => (b.stats().refused.bad_cluster ?? 0) >= 3);
    expect(rb.frames).toHaveLength(0);
    expect(rb.links.some((l) => l.state === 'up')).toBe(false);
    expect(sum(a.stats().peers[0]!.refused)).toBeGreaterThanOrEqual(1);
    const warns = lines.filter((l) => l.level === WARN && l.reason === 'bad_cluster');
    if (warns.length !== 1) console.log(lines.filter((l) => l.level === WARN));
    expect(warns).toHaveLength(1);
  });

  it('a certificate from another CA is refused', async () => {
    dir = tempDir();
    const good = makeCerts(dir.dir, ['fw-b'], 'good');
    const evil = makeCerts(dir.dir, ['fw-a'], 'evil');
    const { b, rb, port } = await victim({ tls: good['fw-b']! });
    const a = attacker(port, { tls: { ...evil['fw-a']!, caFile: good['fw-b']!.caFile } });
    await a.start();
    await waitFor('tls refusal', () => (b.stats().refused.tls ?? 0) >= 1);
    expect(rb.frames).toHaveLength(0);
  });

  it('a valid certificate that names another node cannot claim to be fw-a', async () => {
    dir = tempDir();
    const certs = makeCerts(dir.dir, ['fw-a', 'fw-b', 'fw-x']);
    const { b, rb, port } = await victim({ tls: certs['fw-b']! });
    // fw-x holds a cert from the cluster CA but says "I am fw-a" in its hello.
    const a = attacker(port, { tls: certs['fw-x']! });
    await a.start();
    await waitFor('identity refusal', () => (b.stats().peers[0]!.refused.identity_mismatch ?? 0) >= 1);
    expect(rb.frames).toHaveLength(0);
  });
});

describe('insecure mode', () => {
  it('logs its warning at every start', async () => {
    const { logger, lines } = captureLogger('info');
    const t = transport({ nodeId: 'fw-a', peers: [{ nodeId: 'fw-b', addresses: [`127.0.0.1:${await freePort()}`] }], insecure: true, logger });
    const warnings = (): number => lines.filter((l) => l.level === WARN && l.insecure === true).length;
    await t.start();
    expect(warnings()).toBe(1);
    await t.stop();
    await t.start();
    expect(warnings()).toBe(2);
    expect(lines.find((l) => l.insecure === true)!.msg).toMatch(/PLAINTEXT/);
  });
});

describe('key material errors name the option', () => {
  const peers = [{ nodeId: 'fw-b', addresses: ['127.0.0.1:9'] }];

  async function startError(tlsOpts: TcpTransportOptions['tls']): Promise<TransportError> {
    const t = transport({ nodeId: 'fw-a', peers, tls: tlsOpts });
    const err = await t.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TransportError);
    return err as TransportError;
  }

  it('missing PSK file', async () => {
    const err = await startError({ pskFile: '/nonexistent/ctsync.psk' });
    expect(err.code).toBe('CTS_ERR_KEY_READ');
    expect(err.message).toContain('tls.pskFile');
  });

  it('short, patterned, unparseable and world-readable keys', async () => {
    dir = tempDir();
    const cases: Array<[string, string, number, RegExp]> = [
      ['short.hex', 'ab'.repeat(16), 0o600, /16 bytes.*at least 32/],
      ['pattern.hex', '41'.repeat(48), 0o600, /variety/],
      ['garbage', 'this is not a key!', 0o600, /neither hex nor base64/],
      ['world.hex', 'aa', 0o644, /chmod 600/],
    ];
    for (const [name, content, mode, re] of cases) {
      const path = writeKeyFile(dir.dir, name, content, mode);
      chmodSync(path, mode);
      const err = await startError({ pskFile: path });
      expect(err.code, name).toBe('CTS_ERR_KEY_WEAK');
      expect(err.message, name).toContain('tls.pskFile');
      expect(err.message, name).toMatch(re);
    }
  });

  it('accepts hex and base64 keys of 32 random bytes', () => {
    dir = tempDir();
    const hex = freshPskFile(dir.dir);
    const b64 = writeKeyFile(dir.dir, 'k.b64', loadPsk(hex).toString('base64'));
    expect(loadPsk(b64).equals(loadPsk(hex))).toBe(true);
    expect(loadPsk(hex)).toHaveLength(32);
  });

  it('no key material and no insecure flag is a config error naming the keys', () => {
    expect(() => new TcpTransport({ nodeId: 'fw-a', clusterId: 'lab', peers })).toThrow(/tls\.pskFile/);
    try {
      new TcpTransport({ nodeId: 'fw-a', clusterId: 'lab', peers });
    } catch (e) {
      expect((e as TransportError).code).toBe('CTS_ERR_CONFIG_INVALID');
    }
  });

  it('every bad option is listed in one error', () => {
    let err: TransportError | undefined;
    try {
      new TcpTransport({ nodeId: 'fw a', clusterId: '', peers: [{ nodeId: 'fw-b', addresses: ['nohost'] }], insecure: true, heartbeatMs: 1000, deadAfterMs: 1500 });
    } catch (e) {
      err = e as TransportError;
    }
    expect(err?.code).toBe('CTS_ERR_CONFIG_INVALID');
    for (const key of ['nodeId', 'clusterId', 'peers[0].addresses[0]', 'deadAfterMs']) expect(err!.message).toContain(key);
  });

  it('a missing certificate file names its option', async () => {
    dir = tempDir();
    const certs = makeCerts(dir.dir, ['fw-a']);
    const err = await startError({ ...certs['fw-a']!, keyFile: '/nonexistent/key.pem' });
    expect(err.code).toBe('CTS_ERR_KEY_READ');
    expect(err.message).toContain('tls.keyFile');
  });

  it('a certificate key that every user can read is refused, as a PSK file is', async () => {
    dir = tempDir();
    const certs = makeCerts(dir.dir, ['fw-a']);
    chmodSync(certs['fw-a']!.keyFile, 0o644);
    const err = await startError(certs['fw-a']!);
    expect(err.code).toBe('CTS_ERR_KEY_WEAK');
    expect(err.message).toMatch(/^tls\.keyFile \S+ is readable by every user; run chmod 600 on it$/);
  });
});

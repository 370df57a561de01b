// Runs the transport contract on the TCP/TLS peer link over 127.0.0.1, in PSK mode and in mutual-TLS mode.

import { describe, expect, it } from 'vitest';
import { TcpTransport } from '../../src/transport/tcp/index.js';
import type { TcpTransportOptions } from '../../src/transport/tcp/index.js';
import { freePort, freshPskFile, makeCerts, tempDir } from './tcp-fixtures.js';
import { record, runTransportContract, waitFor, type TransportPair } from './transport-contract.js';

type Security = (id: string) => Pick<TcpTransportOptions, 'tls' | 'insecure'>;

const FAST = { heartbeatMs: 100, deadAfterMs: 400, connectTimeoutMs: 1000, helloTimeoutMs: 1000, backoff: { initialMs: 20, maxMs: 200 }, dialStaggerMs: 50 };

async function makeTcpPair(security: Security, cleanup: () => void): Promise<TransportPair> {
  const [pa, pb] = [await freePort(), await freePort()];
  const common = { clusterId: 'lab', ...FAST };
  const a = new TcpTransport({
    ...common,
    nodeId: 'fw-a',
    listen: { host: '127.0.0.1', port: pa },
    peers: [{ nodeId: 'fw-b', addresses: [`127.0.0.1:${pb}`] }],
    ...security('fw-a'),
  });
  const b = new TcpTransport({
    ...common,
    nodeId: 'fw-b',
    listen: { host: '127.0.0.1', port: pb },
    peers: [{ nodeId: 'fw-a', addresses: [`127.0.0.1:${pa}`] }],
    ...security('fw-b'),
  });
  return { a, b, aId: 'fw-a', bId: 'fw-b', cleanup: async () => cleanup() };
}

runTransportContract('tcp (TLS-PSK)', async () => {
  const t = tempDir();
  const pskFile = freshPskFile(t.dir);
  return makeTcpPair(() => ({ tls: { pskFile } }), t.cleanup);
});

runTransportContract('tcp (mutual TLS)', async () => {
  const t = tempDir();
  const certs = makeCerts(t.dir, ['fw-a', 'fw-b']);
  return makeTcpPair((id) => ({ tls: certs[id]! }), t.cleanup);
});

describe('tcp: one connection per peer pair', () => {
  it('settles on the connection dialed by the lower node id, even when both dial at once', async () => {
    const t = tempDir();
    const pskFile = freshPskFile(t.dir);
    // No stagger: both dial at the same instant, the worst case for the tie-break.
    const pair = await makeTcpPair(() => ({ tls: { pskFile } }), t.cleanup);
    const a = pair.a as TcpTransport;
    const b = pair.b as TcpTransport;
    (a as unknown as { opts: { dialStaggerMs: number } }).opts.dialStaggerMs = 0;
    (b as unknown as { opts: { dialStaggerMs: number } }).opts.dialStaggerMs = 0;
    const ra = record(a);
    const rb = record(b);
    try {
      await Promise.all([a.start(), b.start()]);
      await waitFor('both up', () => ra.state('fw-b') === 'up' && rb.state('fw-a') === 'up');
      // Let any crossing hello settle, then the surviving connection must be the same one on both ends.
      await new Promise((r) => setTimeout(r, 300));
      await waitFor('both up after settling', () => ra.state('fw-b') === 'up' && rb.state('fw-a') === 'up');
      expect(a.stats().peers[0]!.via).toBe('outbound');
      expect(b.stats().peers[0]!.via).toBe('inbound');
      a.send(Buffer.from('ping'));
      await waitFor('frame over the surviving connection', () => rb.frames.length === 1);
      expect(rb.frames[0]!.toString()).toBe('ping');
    } finally {
      await a.stop();
      await b.stop();
      await pair.cleanup?.();
    }
  });
});

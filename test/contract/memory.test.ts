// Runs the transport contract on the in-memory pair, plus the pair's fault-injection hooks.

import { describe, expect, it } from 'vitest';
import { createMemoryPair } from '../../src/transport/memory.js';
import { record, runTransportContract, waitFor } from './transport-contract.js';

runTransportContract('memory', async () => {
  const { a, b } = createMemoryPair({ nodeIds: ['fw-a', 'fw-b'] });
  return { a, b, aId: 'fw-a', bId: 'fw-b' };
});

describe('memory link hooks', () => {
  async function started() {
    const p = createMemoryPair({ nodeIds: ['fw-a', 'fw-b'] });
    const ra = record(p.a);
    const rb = record(p.b);
    await p.a.start();
    await p.b.start();
    return { ...p, ra, rb };
  }

  it('cut takes both ends down and loses frames in flight; restore brings them up', async () => {
    const { a, b, link, ra, rb } = await started();
    a.send(Buffer.from('in flight'));
    link.cut();
    expect(ra.state('fw-b')).toBe('down');
    expect(rb.state('fw-a')).toBe('down');
    expect(a.send(Buffer.from('while cut'))).toBe(false);
    link.restore();
    expect(ra.state('fw-b')).toBe('up');
    a.send(Buffer.from('after'));
    await waitFor('frame after restore', () => rb.frames.length === 1);
    expect(rb.frames[0]!.toString()).toBe('after');
    expect(link.counters().lost).toBe(1);
    await a.stop();
    await b.stop();
  });

  it('dropNext loses exactly n frames in one direction', async () => {
    const { a, b, link, ra, rb } = await started();
    link.dropNext(2, 'a->b');
    for (const s of ['1', '2', '3']) a.send(Buffer.from(s));
    b.send(Buffer.from('back'));
    await waitFor('frames', () => rb.frames.length === 1 && ra.frames.length === 1);
    expect(rb.frames.map(String)).toEqual(['3']);
    expect(ra.frames.map(String)).toEqual(['back']);
    await a.stop();
    await b.stop();
  });

  it('hold + releaseHeld reorders frames', async () => {
    const { a, b, link, rb } = await started();
    link.setFilter((f) => (f.toString() === '1' || f.toString() === '2' ? 'hold' : 'deliver'));
    for (const s of ['1', '2', '3']) a.send(Buffer.from(s));
    await waitFor('frame 3', () => rb.frames.length === 1);
    expect(link.counters().held).toBe(2);
    link.setFilter(undefined);
    expect(link.releaseHeld()).toBe(2);
    await waitFor('held frames', () => rb.frames.length === 3);
    expect(rb.frames.map(String)).toEqual(['3', '2', '1']);
    await a.stop();
    await b.stop();
  });

  it('a throwing onFrame handler is contained and counted', async () => {
    const { a, b } = await started();
    b.onFrame = () => {
      throw new Error('upper layer bug');
    };
    a.send(Buffer.from('x'));
    await waitFor('handler_error counted', () => (b.stats().dropped.handler_error ?? 0) === 1);
    expect(b.stats().peers[0]!.framesIn).toBe(1);
    await a.stop();
    await b.stop();
  });
});

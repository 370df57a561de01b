// Unit tests of scripts/build-netlink.mjs's unified-diff applier and of NetfilterSocket's option checks (no root, no build needed).

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
// @ts-expect-error -- plain .mjs script without type declarations
import { applyHunks, parseUnifiedDiff } from '../../../scripts/build-netlink.mjs';
import { NetfilterSocket } from '../../../src/kernel/netlink-socket.js';

interface Hunk {
  oldStart: number;
  oldCount: number;
  newCount: number;
  lines: Array<{ op: string; text: string }>;
}
type Apply = (text: string, hunks: Hunk[], name?: string) => string;
type Parse = (text: string) => Array<{ path: string; hunks: Hunk[] }>;
const apply = applyHunks as Apply;
const parse = parseUnifiedDiff as Parse;

const root = path.resolve(import.meta.dirname, '../../..');
const patchText = readFileSync(path.join(root, 'patches/netlink+0.3.0.patch'), 'utf8');
const pkgDir = path.dirname(createRequire(import.meta.url).resolve('netlink/package.json'));

describe('unified diff applier', () => {
  it('applies the project patch to the pristine netlink sources', () => {
    const files = parse(patchText);
    expect(files.map((f) => f.path)).toEqual(['src/binding.cc']);
    const pristine = readFileSync(path.join(pkgDir, 'src/binding.cc'), 'utf8');
    const patched = apply(pristine, files[0]!.hunks, 'src/binding.cc');
    expect(patched).toContain('recvmmsg(');
    expect(patched).toContain('napi_fatal_exception(');
    expect(patched).toContain('SocketInNetns(');
    expect(patched).not.toBe(pristine);
  });

  it('refuses to apply twice (the patched file no longer matches the context)', () => {
    const files = parse(patchText);
    const pristine = readFileSync(path.join(pkgDir, 'src/binding.cc'), 'utf8');
    const once = apply(pristine, files[0]!.hunks);
    expect(() => apply(once, files[0]!.hunks, 'src/binding.cc')).toThrow(/does not apply/);
  });

  it('handles insertions, deletions, offsets, pure additions and missing final newlines', () => {
    const diff = [
      '--- a/f.txt',
      '+++ b/f.txt',
      '@@ -2,3 +2,3 @@',
      ' two',
      '-three',
      '+THREE',
      ' four',
      '@@ -6,0 +7,1 @@',
      '+after six',
      '@@ -8,1 +9,1 @@',
      '-eight',
      '\\ No newline at end of file',
      '+EIGHT',
      '',
    ].join('\n');
    const [f] = parse(diff);
    // two extra lines at the top: hunks must be found at an offset
    const src = 'x\ny\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight';
    expect(apply(src, f!.hunks)).toBe('x\ny\none\ntwo\nTHREE\nfour\nfive\nsix\nafter six\nseven\nEIGHT\n');
  });

  it('rejects a hunk whose line counts disagree with its header', () => {
    expect(() => parse('--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n-a\n+b\n')).toThrow(/header says/);
  });

  it('a random edit of random lines round-trips through diff text', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ unit: 'grapheme-ascii', maxLength: 8 }).map((s) => s.replace(/\n/g, '')), { minLength: 1, maxLength: 30 }), fc.nat(), (lines, k) => {
        const i = k % lines.length;
        const before = lines.join('\n') + '\n';
        const after = [...lines.slice(0, i), `${lines[i]}!`, ...lines.slice(i + 1)].join('\n') + '\n';
        const diff = `--- a/x\n+++ b/x\n@@ -${i + 1},1 +${i + 1},1 @@\n-${lines[i]}\n+${lines[i]}!\n`;
        expect(apply(before, parse(diff)[0]!.hunks)).toBe(after);
      }),
    );
  });
});

describe('NetfilterSocket option checks (before any socket is made)', () => {
  it.each([
    [{ batch: 0 }],
    [{ batch: 1025 }],
    [{ batch: 1.5 }],
    [{ slotSize: 100 }],
    [{ rcvbuf: -1 }],
    [{ groups: [0] }],
  ])('rejects %j with CTS_ERR_NETLINK_OPTION', (opts) => {
    expect(() => new NetfilterSocket(opts)).toThrow(expect.objectContaining({ code: 'CTS_ERR_NETLINK_OPTION' }));
  });

  it('rejects a relative netns path', () => {
    expect(() => new NetfilterSocket({ netns: 'run/netns/x' })).toThrow(expect.objectContaining({ code: 'CTS_ERR_NETLINK_OPTION' }));
  });

  it('refuses a binding that is not the patched one, naming the remedy', async () => {
    const prev = process.env.CTSYNC_NETLINK_BINDING;
    process.env.CTSYNC_NETLINK_BINDING = path.join(pkgDir, 'prebuilds/linux-x64/node.napi.node');
    try {
      vi.resetModules(); // a fresh module instance: no binding cached by other tests
      const m = await import('../../../src/kernel/netlink-socket.js');
      expect(() => new m.NetfilterSocket()).toThrow(
        expect.objectContaining({ code: 'CTS_ERR_NETLINK_BINDING', message: expect.stringMatching(/not the patched binding.*build-netlink/) }),
      );
    } finally {
      if (prev === undefined) delete process.env.CTSYNC_NETLINK_BINDING;
      else process.env.CTSYNC_NETLINK_BINDING = prev;
      vi.resetModules();
    }
  });
});

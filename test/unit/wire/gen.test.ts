// The committed generated code in src/wire/gen/ is exactly what scripts/gen-proto.mjs makes from ctsync.proto.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, expect, test } from 'vitest';

const root = resolve(import.meta.dirname, '../../..');
const committed = join(root, 'src/wire/gen');
const fresh = mkdtempSync(join(tmpdir(), 'ctsync-gen-check-'));

afterAll(() => rmSync(fresh, { recursive: true, force: true }));

test('src/wire/gen matches a fresh generation (if not: node scripts/gen-proto.mjs)', () => {
  execFileSync(process.execPath, [join(root, 'scripts/gen-proto.mjs'), '--out', fresh], { stdio: 'pipe' });
  const names = readdirSync(fresh).sort();
  expect(names).toEqual(['ctsync.d.ts', 'descriptor.ts']);
  expect(readdirSync(committed).sort()).toEqual(names);
  for (const name of names) {
    expect(readFileSync(join(committed, name), 'utf8'), name).toBe(readFileSync(join(fresh, name), 'utf8'));
  }
}, 60_000);

// Builds the patched native part of the `netlink` package (postinstall): pristine sources + patches/netlink+0.3.0.patch.
//
// Why: the shipped prebuild aborts the process on a receive-buffer overrun and on any exception
// thrown by a JS callback, and has no generic setsockopt, batch receive or netns support (see
// /work/shared/DOMAIN.md and the patch itself). npm does not run dependencies' install scripts, so
// the project builds its own copy here.
//
// The build lives in node_modules/.ctsync-netlink/ (next to the package, wiped by `npm ci` like the
// package itself), always from a fresh copy of the pristine sources, so the patch can never be
// applied twice. src/kernel/netlink-socket.ts loads build/Release/netlink_binding.node from there
// by path, never through node-gyp-build's prebuild lookup. A stamp (sha256 of the patch, this script and
// the pristine sources) makes a re-run a no-op when nothing changed.
//
// Usage: node scripts/build-netlink.mjs [--force] [--print-dir]
// Needs: g++, make, python3 and Node headers (npm's `nodedir`, or <prefix>/include/node next to
// the running node). Exits non-zero with a message saying what failed.

import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE = 'netlink';
const VERSION = '0.3.0';
const BUILD_DIR_NAME = '.ctsync-netlink'; // also known to src/kernel/netlink-socket.ts
const ADDON = path.join('build', 'Release', 'netlink_binding.node');
const STAMP = 'ctsync-patch.sha256';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const patchFile = path.join(root, 'patches', `${PACKAGE}+${VERSION}.patch`);

function fail(message) {
  process.stderr.write(`ctsync build-netlink: ERROR: ${message}\n`);
  process.exit(1);
}

function log(message) {
  process.stdout.write(`ctsync build-netlink: ${message}\n`);
}

/**
 * Parses a unified diff (as written by `diff -u` / `git diff`) into per-file hunk lists.
 * Only what this project's patches use: modified text files, paths with one leading component.
 */
export function parseUnifiedDiff(text) {
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const files = [];
  let file = null;
  let hunk = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith('--- ') && i + 1 < lines.length && lines[i + 1].startsWith('+++ ')) {
      const target = lines[i + 1].slice(4).split('\t')[0].trim();
      if (target === '/dev/null') throw new Error(`file deletion is not supported (${line})`);
      file = { path: target.replace(/^[^/]+\//, ''), hunks: [] };
      files.push(file);
      hunk = null;
      i++;
      continue;
    }
    const m = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/.exec(line);
    if (m) {
      if (!file) throw new Error(`hunk before any file header at line ${i + 1}`);
      hunk = {
        oldStart: Number(m[1]),
        oldCount: m[2] === undefined ? 1 : Number(m[2]),
        newCount: m[4] === undefined ? 1 : Number(m[4]),
        lines: [],
      };
      file.hunks.push(hunk);
      continue;
    }
    if (hunk && (line[0] === ' ' || line[0] === '-' || line[0] === '+' || line === '')) {
      // an empty line inside a hunk is an empty context line whose space was stripped
      hunk.lines.push(line === '' ? { op: ' ', text: '' } : { op: line[0], text: line.slice(1) });
      continue;
    }
    if (line.startsWith('\\')) {
      // "\ No newline at end of file": applies to the line just before
      const last = hunk && hunk.lines[hunk.lines.length - 1];
      if (last) last.noEol = true;
      continue;
    }
    // anything else (diff --git, index, Only in ...) is a header line between files
    hunk = null;
  }
  for (const f of files) {
    for (const h of f.hunks) {
      const oldN = h.lines.filter((l) => l.op !== '+').length;
      const newN = h.lines.filter((l) => l.op !== '-').length;
      if (oldN !== h.oldCount || newN !== h.newCount) {
        throw new Error(`${f.path}: hunk at -${h.oldStart} has ${oldN}/${newN} lines, header says ${h.oldCount}/${h.newCount}`);
      }
    }
  }
  return files;
}

/**
 * Applies one file's hunks to its text. Context must match exactly; a hunk may sit up to
 * 50 lines away from its stated line (like `patch`, without fuzz). Throws if a hunk does not fit.
 */
export function applyHunks(original, hunks, name = 'file') {
  const endsWithNewline = original.endsWith('\n');
  const src = original.split('\n');
  if (endsWithNewline) src.pop();
  const out = [];
  let pos = 0; // next unconsumed source line (0-based)
  let noEolAtEnd = !endsWithNewline;
  let offset = 0; // where the previous hunk landed relative to its stated line, carried like `patch` does
  for (const h of hunks) {
    const old = h.lines.filter((l) => l.op !== '+').map((l) => l.text);
    // a zero-length old side (oldCount 0) means "insert after line oldStart"
    const want = Math.max(0, (h.oldCount === 0 ? h.oldStart : h.oldStart - 1) + offset);
    let at = -1;
    for (let d = 0; d <= 50 && at < 0; d++) {
      for (const cand of d === 0 ? [want] : [want - d, want + d]) {
        if (cand < pos || cand + old.length > src.length) continue;
        if (old.every((t, k) => src[cand + k] === t)) {
          at = cand;
          break;
        }
      }
    }
    if (at < 0) throw new Error(`${name}: hunk at line ${h.oldStart} does not apply (sources differ from the patch)`);
    offset += at - want;
    out.push(...src.slice(pos, at));
    for (const l of h.lines) if (l.op !== '-') out.push(l.text);
    pos = at + old.length;
    const lastNew = [...h.lines].reverse().find((l) => l.op !== '-');
    if (pos === src.length && lastNew) noEolAtEnd = Boolean(lastNew.noEol);
  }
  out.push(...src.slice(pos));
  return out.join('\n') + (noEolAtEnd ? '' : '\n');
}

function locatePackage() {
  const req = createRequire(path.join(root, 'package.json'));
  let pkgJson;
  try {
    pkgJson = req.resolve(`${PACKAGE}/package.json`);
  } catch {
    fail(`package '${PACKAGE}' is not installed (run npm install)`);
  }
  const dir = path.dirname(pkgJson);
  const version = JSON.parse(readFileSync(pkgJson, 'utf8')).version;
  if (version !== VERSION) fail(`${PACKAGE}@${version} is installed but the patch is for ${VERSION}: update patches/ and this script`);
  let addonApi;
  try {
    addonApi = path.dirname(createRequire(pkgJson).resolve('node-addon-api/package.json'));
  } catch {
    fail(`node-addon-api (a dependency of ${PACKAGE}) is not installed`);
  }
  return { dir, addonApi };
}

function nodeGypArgs() {
  const args = ['rebuild'];
  // outside npm (no npm_config_nodedir), use the headers installed next to this node if any,
  // so node-gyp does not try to download them
  if (!process.env.npm_config_nodedir) {
    const prefix = path.resolve(path.dirname(process.execPath), '..');
    if (existsSync(path.join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
  }
  return args;
}

function main() {
  const argv = process.argv.slice(2);
  if (process.platform !== 'linux') {
    log(`skipped: netlink exists only on Linux (platform ${process.platform})`);
    return;
  }
  const { dir: pkgDir, addonApi } = locatePackage();
  const buildDir = path.join(path.dirname(pkgDir), BUILD_DIR_NAME);
  if (argv.includes('--print-dir')) {
    process.stdout.write(buildDir + '\n');
    return;
  }
  if (!existsSync(patchFile)) fail(`missing ${path.relative(root, patchFile)}`);
  const patchText = readFileSync(patchFile, 'utf8');
  let files;
  try {
    files = parseUnifiedDiff(patchText);
  } catch (e) {
    fail(`cannot parse ${path.relative(root, patchFile)}: ${e.message}`);
  }
  if (files.length === 0) fail(`${path.relative(root, patchFile)} holds no file diffs`);

  const hash = createHash('sha256');
  hash.update(patchText);
  hash.update(readFileSync(fileURLToPath(import.meta.url))); // this recipe (the applier, node-gyp args)
  for (const p of ['binding.gyp', 'src/binding.cc']) hash.update(readFileSync(path.join(pkgDir, p)));
  hash.update(`${process.platform}-${process.arch}`);
  const digest = hash.digest('hex');

  const addon = path.join(buildDir, ADDON);
  const stampPath = path.join(buildDir, STAMP);
  if (!argv.includes('--force') && existsSync(addon) && existsSync(stampPath) && readFileSync(stampPath, 'utf8').trim() === digest) {
    log(`up to date: ${path.relative(root, addon)}`);
    return;
  }

  rmSync(buildDir, { recursive: true, force: true });
  mkdirSync(buildDir, { recursive: true });
  cpSync(path.join(pkgDir, 'src'), path.join(buildDir, 'src'), { recursive: true });
  cpSync(path.join(pkgDir, 'binding.gyp'), path.join(buildDir, 'binding.gyp'));
  for (const f of files) {
    const target = path.join(buildDir, f.path);
    if (!target.startsWith(buildDir + path.sep)) fail(`patch touches a path outside the package: ${f.path}`);
    if (!existsSync(target)) fail(`patch touches ${f.path}, which ${PACKAGE}@${VERSION} does not have`);
    try {
      writeFileSync(target, applyHunks(readFileSync(target, 'utf8'), f.hunks, f.path));
    } catch (e) {
      fail(e.message);
    }
  }
  log(`patched ${files.map((f) => f.path).join(', ')}; building in ${buildDir}`);

  const gyp = createRequire(path.join(root, 'package.json')).resolve('node-gyp/bin/node-gyp.js');
  const r = spawnSync(process.execPath, [gyp, ...nodeGypArgs()], {
    cwd: buildDir,
    encoding: 'utf8',
    // binding.gyp runs `node -p "require('node-addon-api')..."` from the build dir
    env: { ...process.env, NODE_PATH: path.dirname(addonApi) },
  });
  if (r.status !== 0 || !existsSync(addon)) {
    const logPath = path.join(buildDir, 'build.log');
    writeFileSync(logPath, `${r.stdout ?? ''}\n${r.stderr ?? ''}\n${r.error ?? ''}`);
    const tail = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-25).join('\n');
    fail(
      `node-gyp failed (exit ${r.status}${r.error ? `, ${r.error.message}` : ''}) building the patched ${PACKAGE} binding.\n` +
        `It needs g++, make, python3 and Node headers (npm config nodedir). Full log: ${logPath}\n${tail}`,
    );
  }
  writeFileSync(stampPath, digest + '\n');
  log(`built ${path.relative(root, addon)}`);
}

// importable for the unit test of the diff applier
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();

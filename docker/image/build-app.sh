#!/bin/sh
# Puts a runnable ctsync into /opt/ctsync (the build stage's WORKDIR, holding the project's sources).
#
# Two ways, chosen by what the build context holds:
# - prebuilt: the context has .ctsync-prebuilt/{node_modules,dist}, copied to /opt/ctsync by the Dockerfile
#   (test/compose/run.sh stages them from the host's `npm ci`, compiles with tsc and prunes dev dependencies). Used where builds have no network (the lab engine here: its builds see
#   only a loopback device, so the npm registry is out of reach). The host must run the image's Node major
#   version and glibc, because node_modules holds a native addon (true for ctsync-base:local: same Debian,
#   the host's node binary).
# - from source (the normal path for users, e.g. `docker-compose build`): npm ci (registry needed) builds the
#   patched netlink addon from source, npm run build compiles, then dev dependencies are pruned.
set -eu
cd /opt/ctsync
if [ -d node_modules ] && [ -d dist ]; then
  echo "build-app: using the prebuilt node_modules and dist from the build context"
else
  echo "build-app: npm ci && npm run build"
  rm -rf node_modules dist
  npm ci --no-audit --no-fund
  npm run build
  npm prune --omit=dev --no-audit --no-fund
fi
chmod +x dist/src/cli/main.js
# The netlink addon must load here, or every ct command fails later with a less clear error.
# (path: scripts/build-netlink.mjs builds it into node_modules/.ctsync-netlink)
node -e "
const b = require('/opt/ctsync/node_modules/.ctsync-netlink/build/Release/netlink_binding.node');
if (typeof b.NativeNetlink !== 'function') { console.error('build-app: netlink addon lacks NativeNetlink'); process.exit(1); }
console.log('build-app: patched netlink addon loads with node ' + process.version);"
node dist/src/cli/main.js --help >/dev/null

#!/bin/sh
# Puts a runnable ctsync into /opt/ctsync (the build stage's WORKDIR, holding the project's sources).
#
# Two ways, chosen by what the build context holds:
# - prebuilt: the context has .ctsync-prebuilt/{node_modules,dist} (test/compose/run.sh stages this from a
#   host `npm ci && npm run build`). Used where builds have no network (the lab engine here: its builds see
#   only a loopback device, so the npm registry is out of reach). The host must run the image's Node major
#   version and glibc, because node_modules holds a native addon (true for ctsync-base:local: same Debian,
#   the host's node binary).
# - from source (the normal path for users, e.g. `docker-compose build`): npm ci (registry needed) builds the
#   patched netlink addon from source, npm run build compiles, then dev dependencies are pruned.
set -eu
cd /opt/ctsync
if [ -d /tmp/stage/.ctsync-prebuilt/node_modules ] && [ -d /tmp/stage/.ctsync-prebuilt/dist ]; then
  echo "build-app: using the prebuilt node_modules and dist from the build context"
  mv /tmp/stage/.ctsync-prebuilt/node_modules /tmp/stage/.ctsync-prebuilt/dist .
else
  echo "build-app: npm ci && npm run build"
  npm ci --no-audit --no-fund
  npm run build
  npm prune --omit=dev --no-audit --no-fund
fi
rm -rf /tmp/stage
chmod +x dist/src/cli/main.js
# The netlink addon must load here, or every ct command fails later with a less clear error.
# (path: scripts/build-netlink.mjs builds it into node_modules/.ctsync-netlink)
node -e "
const b = require('/opt/ctsync/node_modules/.ctsync-netlink/build/Release/netlink_binding.node');
if (typeof b.NativeNetlink !== 'function') { console.error('build-app: netlink addon lacks NativeNetlink'); process.exit(1); }
console.log('build-app: patched netlink addon loads with node ' + process.version);"

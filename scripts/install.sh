#!/usr/bin/env bash
# Installs what ctsync and its tests need on a fresh Debian machine (as root): system packages, then npm ci and a build.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh must run as root: it installs Debian packages, and ctsync writes kernel conntrack tables" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
packages=(conntrack conntrackd nftables iproute2 iptables keepalived redis-server openssl socat python3 g++ make procps)
missing=()
for p in "${packages[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  # policy-rc.d keeps the packages' own services (redis, keepalived, conntrackd) from starting: tests start their own
  own_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
fi
# Node.js 20 or newer (the project's machines have it; a bare Debian gets its packaged nodejs, checked below)
if ! command -v node >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "ctsync needs Node.js 20 or newer; this machine has $(node --version). Install a newer nodejs and run this again." >&2
  exit 1
fi
npm ci --no-audit --no-fund
npm run build
chmod +x dist/src/cli/main.js
ln -sf "$PWD/dist/src/cli/main.js" /usr/local/bin/ctsync
echo "ctsync installed: $(command -v ctsync)"

#!/usr/bin/env bash
# Installs what ctsync and its tests need on a fresh Debian machine (as root): system packages, then npm ci and a build.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh must run as root: it installs Debian packages, and ctsync writes kernel conntrack tables" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
packages=(conntrack conntrackd nftables iproute2 iptables keepalived redis-server socat python3 g++ make procps)
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
npm ci --no-audit --no-fund
npm run build

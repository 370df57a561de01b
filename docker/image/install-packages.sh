#!/bin/sh
# Installs (apt) only what the image's base lacks, so a base that already has everything builds offline.
#   install-packages.sh runtime   what every lab container runs
#   install-packages.sh node      only Node.js (the build stage when the app arrives prebuilt)
#   install-packages.sh build     runtime plus what `npm ci` needs to build the native netlink addon (only used
#                                 when the app is built inside the image)
set -eu
ROLE="${1:-runtime}"

# command -> Debian package
runtime="nft:nftables ip:iproute2 conntrack:conntrack keepalived:keepalived ps:procps python3:python3
socat:socat ping:iputils-ping tini:tini redis-server:redis-server"
build="make:make g++:g++ python3:python3"

want=""
check() {
  for pair in $1; do
    cmd="${pair%%:*}"; pkg="${pair#*:}"
    command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/usr/bin/$cmd" ] || want="$want $pkg"
  done
}
[ "$ROLE" = node ] || check "$runtime"
[ "$ROLE" = build ] && check "$build"
# Node.js: the base may bring it (node:20-* images, ctsync-base:local); otherwise Debian's package.
if ! command -v node >/dev/null 2>&1; then want="$want nodejs"; [ "$ROLE" = build ] && want="$want npm"; fi
if [ "$ROLE" = build ] && command -v node >/dev/null 2>&1 && ! command -v npm >/dev/null 2>&1; then want="$want npm"; fi
[ -f /etc/ssl/certs/ca-certificates.crt ] || want="$want ca-certificates"

if [ -n "$want" ]; then
  echo "install-packages ($ROLE): apt-get install$want"
  # Keep package services from starting during the build.
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  # shellcheck disable=SC2086
  apt-get install -y --no-install-recommends $want
  rm -rf /var/lib/apt/lists/*
else
  echo "install-packages ($ROLE): the base has everything, no network needed"
fi

major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
  echo "install-packages: node $(node --version) is too old (ctsync needs >= 20); use a base with Node 20," \
       "e.g. --build-arg BASE=node:20-bookworm-slim" >&2
  exit 1
fi

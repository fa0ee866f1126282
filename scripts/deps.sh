#!/usr/bin/env bash
# Install the Debian packages orchd needs to build, test and run, and to
# build and test its own .deb (scripts/test-deb).  clang and its runtime
# (libFuzzer, sanitizers) are for scripts/fuzz only: orchd builds with gcc.
# Only what is missing is installed; safe to run again.
set -euo pipefail

PKGS=(
	build-essential autoconf automake libtool pkg-config
	libev-dev libhiredis-dev libssl-dev libpq-dev libjsmn-dev zlib1g-dev
	check
	clang libclang-rt-14-dev
	redis-server postgresql
	python3 python3-websockets curl openssl procps
	dpkg-dev debhelper fakeroot adduser init-system-helpers logrotate
)

missing=()
for p in "${PKGS[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
		grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "deps: installing ${missing[*]}" >&2
	SUDO=
	if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The interop tests' extras: Chromium, node and the pinned npm packages.
"$(dirname "$0")/interop-deps.sh"

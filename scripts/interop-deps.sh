#!/usr/bin/env bash
# Install what the WebSocket interop tests (tests/integration/test_ws_interop.py)
# need beyond scripts/deps.sh:
#   - Debian's chromium (/usr/bin/chromium), driven headless by playwright-core;
#   - node and npm (Debian's nodejs/npm, only if missing);
#   - the npm packages pinned in tests/interop/package-lock.json (ws,
#     playwright-core), installed with `npm ci` into tests/interop/node_modules.
# Only what is missing is installed: a second run does nothing and is fast.
# playwright-core never downloads a browser of its own here: the tests use
# Debian's chromium through executablePath.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
interop="$top/tests/interop"

SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

# ---- Debian packages ---------------------------------------------------------

pkgs=()
if ! [ -x /usr/bin/chromium ] || ! installed chromium; then
	pkgs+=(chromium)
fi
# node may come from another packaging of nodejs (with npm inside): only ask
# Debian for what is really absent.
if ! command -v node >/dev/null 2>&1; then
	pkgs+=(nodejs)
fi
if ! command -v npm >/dev/null 2>&1; then
	pkgs+=(npm)
fi
if [ ${#pkgs[@]} -gt 0 ]; then
	echo "interop-deps: installing ${pkgs[*]}" >&2
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
	echo "interop-deps: warning: node $(node --version 2>/dev/null) is older than" \
		"20, which playwright-core needs" >&2
fi

# ---- npm packages ------------------------------------------------------------

# The stamp records which package.json + package-lock.json node_modules was
# installed from; npm ci runs again only when they change (or a package is gone).
stamp="$interop/node_modules/.orchd-interop-stamp"
want=$(cat "$interop/package.json" "$interop/package-lock.json" | sha256sum | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
if [ "$want" != "$have" ] ||
	[ ! -f "$interop/node_modules/ws/package.json" ] ||
	[ ! -f "$interop/node_modules/playwright-core/package.json" ]; then
	echo "interop-deps: npm ci in tests/interop" >&2
	(
		cd "$interop" &&
			PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund \
				--loglevel=error >/dev/null
	)
	printf '%s\n' "$want" >"$stamp"
fi

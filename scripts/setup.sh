#!/usr/bin/env bash
# Installs what the tests need on a fresh machine, idempotently:
# Debian's protobuf-compiler (for scripts/gen.sh --check and the schema
# test that decodes records with protoc), protoc-gen-go, and Debian's
# chromium (the browser tests in edge/web drive it headless with chromedp;
# they look for it at /usr/bin/chromium or $CAUSEWAY_CHROMIUM), and
# Debian's clickhouse-server, clickhouse-client and openssl (the ClickHouse
# sink's tests start a project-local server with scripts/clickhouse.sh,
# which makes its TLS certificate with openssl; this only installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
# Checked by its package, not by PATH: a browser found elsewhere (a snap
# stub, a Chrome build) is not the one the tests are written against.
dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q 'install ok installed' || need_apt+=(chromium)
for p in clickhouse-server clickhouse-client openssl; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "setup: need ${need_apt[*]}; run as root or: sudo apt-get install -y ${need_apt[*]}" >&2
		exit 1
	fi
	echo "setup: installing ${need_apt[*]}"
	# Update the package lists only when they are missing or a day old
	# (apt may store them compressed, as *_Packages.lz4).
	if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
		apt-get update -q >/dev/null
	fi
	# A list under a day old can still name a package version the mirror
	# has replaced (security updates move chromium often): on failure,
	# update once and try again.
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >/dev/null; then
		apt-get update -q >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >/dev/null
	fi
fi

gobin="$(go env GOPATH)/bin"
if ! PATH="$PATH:$gobin" command -v protoc-gen-go >/dev/null 2>&1; then
	echo "setup: installing protoc-gen-go"
	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
fi

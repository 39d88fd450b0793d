#!/usr/bin/env bash
# Installs what the tests need on a fresh machine, idempotently:
# Debian's protobuf-compiler (for scripts/gen.sh --check and the schema
# test that decodes records with protoc) and protoc-gen-go.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
if [ ${#need_apt[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "setup: need ${need_apt[*]}; run as root or: sudo apt-get install -y ${need_apt[*]}" >&2
		exit 1
	fi
	echo "setup: installing ${need_apt[*]}"
	# Update the package lists only when they are missing or a day old.
	if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages' -mmin -1440 2>/dev/null | head -1)" ]; then
		apt-get update -q >/dev/null
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >/dev/null
fi

gobin="$(go env GOPATH)/bin"
if ! PATH="$PATH:$gobin" command -v protoc-gen-go >/dev/null 2>&1; then
	echo "setup: installing protoc-gen-go"
	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
fi

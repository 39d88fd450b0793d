#!/usr/bin/env bash
# Regenerates schemas/causewaypb from schemas/proto with protoc and
# protoc-gen-go.
#
#   scripts/gen.sh          regenerate in place
#   scripts/gen.sh --check  regenerate into a temp dir and fail, with a diff,
#                           if the committed code differs (CI runs this)
#
# The generated files record the tool versions in their header, so the
# pinned versions below are the ones the committed code was made with.
set -euo pipefail

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_VERSION=3.21.12 # Debian bookworm's protobuf-compiler
MODULE=github.com/causeway/causeway

cd "$(dirname "$0")/.."

check=false
case "${1:-}" in
'') ;;
--check) check=true ;;
-h | --help)
	sed -n '2,10s/^# \{0,1\}//p' "$0"
	exit 0
	;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac

die() {
	echo "gen.sh: $*" >&2
	exit 1
}

command -v go >/dev/null || die "go not found on PATH"

if ! command -v protoc >/dev/null; then
	die "protoc not found; install it with: apt-get install -y protobuf-compiler (want $PROTOC_VERSION)"
fi
if [[ "$(protoc --version)" != "libprotoc $PROTOC_VERSION" ]]; then
	echo "gen.sh: warning: $(protoc --version), the committed code was made with libprotoc $PROTOC_VERSION;" \
		"--check may report a header-only difference" >&2
fi

gobin="$(go env GOPATH)/bin"
export PATH="$PATH:$gobin"
if ! command -v protoc-gen-go >/dev/null; then
	echo "gen.sh: protoc-gen-go not found; installing $PROTOC_GEN_GO_VERSION into $gobin" >&2
	go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION" ||
		die "could not install protoc-gen-go; install it with: go install google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
fi
if [[ "$(protoc-gen-go --version)" != "protoc-gen-go $PROTOC_GEN_GO_VERSION" ]]; then
	die "$(command -v protoc-gen-go) is $(protoc-gen-go --version), want $PROTOC_GEN_GO_VERSION;" \
		"install it with: go install google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
fi

mapfile -t protos < <(cd schemas/proto && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)
((${#protos[@]} > 0)) || die "no .proto files under schemas/proto"

# generate DIR: writes the Go code under DIR as if DIR were the repo root.
generate() {
	(cd schemas/proto && protoc -I . --go_out="$1" --go_opt=module="$MODULE" "${protos[@]}")
}

if ! $check; then
	# Generate aside first, then swap, so a protoc error leaves the
	# committed code untouched and removed .proto files leave no stale .pb.go.
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' EXIT
	generate "$tmp"
	rm -f schemas/causewaypb/*.pb.go
	mkdir -p schemas/causewaypb
	cp "$tmp"/schemas/causewaypb/*.pb.go schemas/causewaypb/
	echo "gen.sh: regenerated schemas/causewaypb from ${protos[*]}"
	exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
generate "$tmp"
mkdir -p "$tmp/schemas/causewaypb"
# Compare only generated files: other Go files in causewaypb are not ours.
mkdir -p "$tmp/committed"
shopt -s nullglob
for f in schemas/causewaypb/*.pb.go; do cp "$f" "$tmp/committed/"; done
mkdir -p "$tmp/fresh"
for f in "$tmp"/schemas/causewaypb/*.pb.go; do cp "$f" "$tmp/fresh/"; done
if ! diff -ru "$tmp/committed" "$tmp/fresh" >"$tmp/diff"; then
	sed -e "s|$tmp/committed|schemas/causewaypb (committed)|g" -e "s|$tmp/fresh|schemas/causewaypb (regenerated)|g" "$tmp/diff" >&2
	die "schemas/causewaypb is out of date with schemas/proto: run scripts/gen.sh and commit the result"
fi
echo "gen.sh: schemas/causewaypb is up to date"

#!/usr/bin/env bash
# The production S3 server of the tests: SeaweedFS's `weed` (Apache-2.0), built once from
# the Go module proxy and cached per version; prints the binary's path.
#   cache: ${MXBUILD_SERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mxbuild/servers}/seaweedfs-<version>/weed
# A cold build (module download + compile) takes minutes of CPU; then it is one stat.
set -euo pipefail
VERSION="v0.0.0-20261109003541-7506e5f91cd6"
MODULE="github.com/seaweedfs/seaweedfs"
cache="${MXBUILD_SERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mxbuild/servers}/seaweedfs-$VERSION"
bin="$cache/weed"
if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi
if ! command -v go >/dev/null; then
    echo "seaweedfs.sh: no Go toolchain (SeaweedFS $VERSION needs Go >= 1.26)" >&2
    echo "  fix: install Go 1.26 (the go command) and re-run .ci/seaweedfs.sh" >&2
    exit 1
fi
echo "seaweedfs.sh: building SeaweedFS $VERSION into $cache (once; minutes of CPU)" >&2
start=$(date +%s)
# `go install pkg@version` refuses modules with replace directives: build in the module's
# (read-only) directory of the module cache instead.
dir=$(go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -d "$dir" ] || { echo "seaweedfs.sh: go mod download $MODULE@$VERSION failed" >&2; exit 1; }
mkdir -p "$cache"
tmp="$cache/weed.tmp.$$"
trap 'rm -f "$tmp"' EXIT
(cd "$dir" && GOFLAGS=-buildvcs=false GOTOOLCHAIN=local nice -n 10 go build -trimpath -o "$tmp" ./weed)
mv "$tmp" "$bin"
echo "seaweedfs.sh: built in $(( $(date +%s) - start )) s" >&2
echo "$bin"

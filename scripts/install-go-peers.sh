#!/bin/sh
# Installs the Go programs that tests and benchmarks run beside ours as oracles,
# into bin/peers of the repository. Idempotent: a peer already present is kept, so
# the script is fast on every `make test`.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
peers="$root/bin/peers"
export PATH="$("$root/scripts/install-go.sh"):$PATH"
mkdir -p "$peers"

# hcsshim's tar2ext4: the reference for `hcs tar2ext4` and pkg/ext4's compatibility mode.
if [ ! -x "$peers/tar2ext4" ]; then
	echo "installing hcsshim tar2ext4 v0.13.0 into $peers" >&2
	GOBIN="$peers" GOFLAGS=-mod=mod go install github.com/Microsoft/hcsshim/cmd/tar2ext4@v0.13.0
fi

# The same library with the options its command line lacks (dm-verity, maximum disk
# size, ConvertAndComputeRootDigest): scripts/peers/hcsshim-tar2ext4-verity.
if [ ! -x "$peers/hcsshim-tar2ext4-verity" ]; then
	echo "building hcsshim-tar2ext4-verity (hcsshim v0.13.0) into $peers" >&2
	(cd "$root/scripts/peers/hcsshim-tar2ext4-verity" && GOBIN="$peers" go install .)
fi

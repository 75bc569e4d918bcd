#!/bin/sh
# Installs the Go programs that tests and benchmarks run beside ours as oracles,
# into bin/peers of the repository. Idempotent: a peer already present is kept, so
# the script is fast on every `make test`. With the argument `bench` it also installs
# the peers only benchmarks use.
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

# CNI plugins, the parts of hns networks: built from containernetworking/plugins at the
# version hns is tested with (Debian's 1.1.1 portmap fails CHECK on IPv4-only hosts),
# into bin/cni/<version>, the directory tests and benchmarks point HOSTCOMPUTE_CNI_PATH at.
cni_version=v1.10.0
cni="$root/bin/cni/$cni_version"
cni_plugins="main/bridge ipam/host-local meta/firewall meta/tuning meta/portmap meta/bandwidth"
missing=""
for p in $cni_plugins; do
	[ -x "$cni/$(basename "$p")" ] || missing="$missing github.com/containernetworking/plugins/plugins/$p@$cni_version"
done
if [ -n "$missing" ]; then
	echo "installing CNI plugins $cni_version into $cni" >&2
	mkdir -p "$cni"
	# shellcheck disable=SC2086 # one argument per package
	GOBIN="$cni" GOFLAGS=-mod=mod go install $missing
fi

# crane (go-containerregistry's client), an independent reader and writer of what
# `hcs image` pushes, and the pull peer of the image benchmarks: into
# bin/peers/crane/<version>, where tests and benchmarks look for it.
crane_version=v0.20.7
crane="$root/bin/peers/crane/$crane_version"
if [ ! -x "$crane/crane" ]; then
	echo "installing crane $crane_version into $crane" >&2
	mkdir -p "$crane"
	GOBIN="$crane" GOFLAGS=-mod=mod go install github.com/google/go-containerregistry/cmd/crane@$crane_version
fi

# The rest is for `make bench` only (scripts/install-go-peers.sh bench): the tests do
# not run it, so `make test` does not pay for building it.
[ "${1:-}" = bench ] || exit 0

# containerd, its ctr and its runc v2 shim: the peer of the container exec row's
# memory figure (the shim's resident memory for the same container as our monitor's).
# Into bin/peers/containerd/<version> and bin/peers/containerd-shim-runc-v2/<version>,
# where bench/shim.go looks (containerdVersion there). Static, without the
# snapshotters that need C headers; the bench runs the container from a rootfs.
containerd_version=v2.4.2
ctrd="$root/bin/peers/containerd/$containerd_version"
shim="$root/bin/peers/containerd-shim-runc-v2/$containerd_version"
if [ ! -x "$ctrd/containerd" ] || [ ! -x "$ctrd/ctr" ]; then
	echo "installing containerd and ctr $containerd_version into $ctrd" >&2
	mkdir -p "$ctrd"
	GOBIN="$ctrd" GOFLAGS=-mod=mod CGO_ENABLED=0 go install -tags no_btrfs,no_devmapper,no_zfs \
		github.com/containerd/containerd/v2/cmd/containerd@$containerd_version \
		github.com/containerd/containerd/v2/cmd/ctr@$containerd_version
fi
if [ ! -x "$shim/containerd-shim-runc-v2" ]; then
	echo "installing containerd-shim-runc-v2 $containerd_version into $shim" >&2
	mkdir -p "$shim"
	GOBIN="$shim" GOFLAGS=-mod=mod go install github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$containerd_version
fi

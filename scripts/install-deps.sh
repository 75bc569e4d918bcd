#!/usr/bin/env bash
# Installs the Debian packages hostcompute uses as real parts and as test oracles, and
# installs a Go toolchain when needed. Only missing packages are installed; apt-get update runs only
# when something is missing. Usage: scripts/install-deps.sh [test|demo|bench]
set -euo pipefail

purpose=${1:-test}
# Packages every purpose needs. GNU tar is the import/export peer and oracle; qemu-utils
# (qemu-img, qemu-io), 7zip (7zz) and libvhdi-utils (vhdiinfo) are the VHD oracles of
# pkg/vhd; 7zz is the only one here that reads differencing VHDs.
# e2fsprogs (mkfs.ext4, e2fsck, resize2fs) formats and checks ext4 disks and images;
# cryptsetup-bin (veritysetup) checks dm-verity trees; ntfs-3g (mkntfs) formats NTFS
# scratch disks; fuse3 gives fusermount3 to the FUSE views; runc and busybox-static run
# containers from mounted layer stacks. iptables (the nf_tables backend, Debian's
# default; the legacy one works too) is what the CNI portmap, firewall and bridge
# plugins program; iproute2 and util-linux (nsenter) let tests look into namespaces.
# docker-registry (the distribution registry, 2.8) is the real registry image tests
# start on loopback; skopeo and umoci are the independent image clients they check
# against.
pkgs=(tar gzip zstd ca-certificates qemu-utils 7zip libvhdi-utils e2fsprogs
  cryptsetup-bin ntfs-3g fuse3 runc busybox-static iptables iproute2 util-linux
  docker-registry skopeo umoci)
case "$purpose" in
  # Peers of the benchmarks: debootstrap makes the Debian rootfs tar; erofs-utils,
  # squashfs-tools and squashfuse are the image-build and image-read peers of CimFS.
  bench) pkgs+=(time debootstrap erofs-utils squashfs-tools squashfuse) ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A Go toolchain as new as go.mod asks (scripts/install-go.sh installs one when there is
# none or an older one); the Makefile puts its folder first in PATH.
"$(dirname "$0")/install-go.sh" >/dev/null

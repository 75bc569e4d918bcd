#!/usr/bin/env bash
# Makes sure a Go toolchain new enough for go.mod is on this machine and prints the
# folder of its go command (for PATH). Order of preference:
#   1. go in PATH or /usr/local/go/bin/go, if it is at least the version go.mod names;
#   2. that version, fetched as the module golang.org/toolchain through the Go module
#      proxy by whatever go there is (any Go with modules can fetch it);
#   3. when there is no go at all, Debian's golang-go package (apt-get update first),
#      and then step 2 with it.
# Messages go to standard error; standard output is only the folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
want=$(awk '$1 == "go" { print $2; exit }' "$root/go.mod")

# version_ge A B: A >= B for dotted Go versions (1.26.8, 1.19, 1.26rc1 counts as 1.26).
version_ge() {
  local IFS=.
  local -a a=($1) b=($2)
  for i in 0 1 2; do
    local x=${a[i]:-0} y=${b[i]:-0}
    x=${x%%[!0-9]*}; y=${y%%[!0-9]*}
    x=${x:-0}; y=${y:-0}
    if ((10#$x > 10#$y)); then return 0; fi
    if ((10#$x < 10#$y)); then return 1; fi
  done
  return 0
}

# go_version GO: the version GO reports, without the "go" prefix ("" if it does not run).
# GOTOOLCHAIN=local keeps a new go from switching toolchains on its own while asked.
go_version() {
  local v
  v=$(cd / && GOTOOLCHAIN=local "$1" env GOVERSION 2>/dev/null) || v=""
  if [ -z "$v" ] || [ "$v" = GOVERSION ]; then
    # Go before 1.16 has no GOVERSION; `go version` says "go version go1.x.y os/arch".
    v=$(cd / && "$1" version 2>/dev/null | awk '{print $3}') || v=""
  fi
  echo "${v#go}"
}

# INSTALL_GO_CANDIDATES (space-separated go commands) replaces the search, so the
# fetching path can be tried on a machine that has a new Go in /usr/local/go.
candidates=()
if [ -n "${INSTALL_GO_CANDIDATES+set}" ]; then
  for g in $INSTALL_GO_CANDIDATES; do
    if [ -x "$g" ]; then candidates+=("$g"); fi
  done
else
  if command -v go >/dev/null 2>&1; then candidates+=("$(command -v go)"); fi
  for g in /usr/local/go/bin/go /usr/lib/go/bin/go; do
    if [ -x "$g" ]; then candidates+=("$g"); fi
  done
fi

base=""
for g in "${candidates[@]}"; do
  v=$(go_version "$g")
  [ -n "$v" ] || continue
  if version_ge "$v" "$want"; then
    dirname "$g"
    exit 0
  fi
  [ -n "$base" ] || base=$g
done

if [ -z "$base" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-go: no Go toolchain found and not root: install Debian's golang-go (or Go $want) first" >&2
    exit 1
  fi
  echo "install-go: no Go toolchain found; installing Debian's golang-go to fetch Go $want" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends golang-go ca-certificates >/dev/null
  for g in /usr/lib/go/bin/go /usr/bin/go; do
    if [ -x "$g" ]; then base=$g; break; fi
  done
  if [ -z "$base" ]; then
    echo "install-go: golang-go installed no go command" >&2
    exit 1
  fi
fi

# The toolchain module Go's own GOTOOLCHAIN switching downloads: golang.org/toolchain
# v0.0.1-go<version>.<os>-<arch>, whose zip holds a whole GOROOT. `go mod download`
# fetches and verifies it (against sum.golang.org) with any Go that has modules, which
# Debian 12's Go 1.19, too old for GOTOOLCHAIN itself, does.
goos=$(cd / && GOTOOLCHAIN=local "$base" env GOHOSTOS)
goarch=$(cd / && GOTOOLCHAIN=local "$base" env GOHOSTARCH)
mod="golang.org/toolchain@v0.0.1-go$want.$goos-$goarch"
echo "install-go: $base is Go $(go_version "$base"); go.mod needs $want: fetching $mod through the Go module proxy" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'module fetchtoolchain\n' >"$tmp/go.mod"
dir=$(cd "$tmp" && GOTOOLCHAIN=local GOFLAGS=-mod=mod "$base" mod download -json "$mod" |
  awk -F'"' '$2 == "Dir" { print $4 }')
if [ -z "$dir" ] || [ ! -f "$dir/bin/go" ]; then
  echo "install-go: downloading $mod failed" >&2
  exit 1
fi
# A module zip keeps no file modes; go restores the executable bits of bin/ and
# pkg/tool/ when it switches toolchains itself, so do the same.
find "$dir/bin" "$dir/pkg/tool" -type f ! -perm -u+x -exec chmod a+x {} +
v=$(go_version "$dir/bin/go")
if ! version_ge "$v" "$want"; then
  echo "install-go: $dir/bin/go reports $v, not $want" >&2
  exit 1
fi
echo "$dir/bin"

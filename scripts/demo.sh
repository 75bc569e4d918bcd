#!/usr/bin/env bash
# The demo: generate a Windows base layer and a child layer as OCI layer tars, import
# both with hcs as layer folders and as CimFS images, inspect them, export them again
# and check that the exported tars are the very bytes that went in; then build a new
# Windows layer on Linux (a scratch layer over the base, changed through its union,
# committed as a diff, imported as a folder and as a CIM that forks the base's, exported
# again byte-identical), and run a Linux container from ext4 layer images and export
# its changes; push the Windows image to a registry, pull it back and convert it to
# CIMs, and pull a Linux image and run it. A summary closes it. Everything happens under a temporary folder.
set -euo pipefail
cd "$(dirname "$0")/.."
hcs=$PWD/bin/hcs
work=$(mktemp -d "${TMPDIR:-/tmp}/hcs-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT

say() { printf '\n== %s\n' "$*"; }
summary=()   # one line per check, printed at the end
note() { summary+=("$*"); }

say "Generating sample layers (embedded generator, seed 1)"
go run ./internal/cmd/mksample -seed 1 -files 3000 -bytes $((96<<20)) -uvm > "$work/base.tar"
go run ./internal/cmd/mksample -seed 2 -files 400 -bytes $((8<<20)) \
  -whiteouts 'Files/Windows/System32/d0000/f00003.dll,Files/Windows/System32/d0001/f00100.dll' | gzip -1 > "$work/child.tar.gz"
ls -l "$work"/*.tar* | awk '{print "  " $5 " bytes  " $9}'

say "Importing the base layer, then the child layer on top of it"
"$hcs" layer import -f "$work/base.tar" "$work/layers/base"
"$hcs" layer import -f "$work/child.tar.gz" --parent "$work/layers/base" "$work/layers/child"

say "What a layer folder holds (real files under Files/, metadata in hcsmeta/)"
(cd "$work/layers/child" && ls -1 && echo "  tombstones.txt:" && sed -e '1s/^\xef\xbb\xbf/[UTF-8 BOM]/' -e 's/^/    /' tombstones.txt)

say "Inspecting the child layer (first entries)"
"$hcs" layer inspect "$work/layers/child" | head -n 14
echo "  ..."
"$hcs" layer inspect -o json "$work/layers/child" > "$work/child.json"
printf '  %s entries in JSON form\n' "$(grep -o '"name"' "$work/child.json" | wc -l)"

say "Exporting both layers and comparing with the input tars"
"$hcs" layer export -f "$work/base.out.tar" "$work/layers/base"
"$hcs" layer export -f "$work/child.out.tar" "$work/layers/child"
gzip -dc "$work/child.tar.gz" > "$work/child.tar"
ok=1
for l in base child; do
  a=$(sha256sum < "$work/$l.tar" | cut -c1-64)
  b=$(sha256sum < "$work/$l.out.tar" | cut -c1-64)
  if [ "$a" = "$b" ]; then
    echo "  $l: exported tar is byte-identical to the input (sha256 ${a:0:16}…)"
    note "ok  tar → layer folder → tar, $l layer: byte-identical"
  else
    echo "  $l: exported tar differs from the input" >&2; ok=0
  fi
done

say "GNU tar reads the exported tar"
tar -tvf "$work/child.out.tar" 2>/dev/null | sed -n 1,5p   # GNU tar does not know the MSWINDOWS records and says so

say "Building the same layers as CimFS images (the child forks the base's CIM)"
"$hcs" cim create -q -f "$work/base.tar" "$work/cim/base"
"$hcs" cim create -q -f "$work/child.tar.gz" --parent "$work/cim/base" "$work/cim/child"
ls -l "$work/cim/cim-layers" | awk 'NR>1 {print "  " $5 " bytes  " $9}'
"$hcs" cim verify "$work/cim/child"
"$hcs" cim ls -l "$work/cim/child" Files | head -n 5

say "Exporting the CIM layers and comparing with the input tars"
for l in base child; do
  "$hcs" cim export -f "$work/$l.cim.tar" "$work/cim/$l"
  if cmp -s "$work/$l.tar" "$work/$l.cim.tar"; then
    echo "  $l: tar → CIM → tar is byte-identical to the input"
    note "ok  tar → CIM → tar, $l layer: byte-identical"
  else
    echo "  $l: the CIM export differs from the input" >&2; ok=0
  fi
done

if [ "$(id -u)" = 0 ] && [ -e /dev/loop-control ]; then
  say "Building a Windows image on Linux: a scratch layer over the base, changed through its union"
  scratch="$work/layers/build"
  "$hcs" layer scratch --size 1GiB --parent "$work/layers/base" "$scratch" >/dev/null
  "$hcs" layer activate "$scratch" >/dev/null
  deactivate() { "$hcs" layer unprepare "$scratch" >/dev/null 2>&1 || true; "$hcs" layer deactivate "$scratch" >/dev/null 2>&1 || true; }
  trap 'deactivate; rm -rf "$work"' EXIT
  "$hcs" layer prepare "$scratch" >/dev/null
  union=$("$hcs" layer path "$scratch")
  echo "  union at $union"
  sys32="$union/Windows/System32"
  modified=$(cd "$sys32" && ls d0002 | head -n 1)
  deleted=$(cd "$sys32" && ls d0003 | head -n 1)
  replaced=d0004
  printf 'patched on Linux\n' >> "$sys32/d0002/$modified"          # modify: copied up, keeps its Windows metadata
  rm "$sys32/d0003/$deleted"                                      # delete: a tombstone in the new layer
  rm -r "$sys32/$replaced" && mkdir "$sys32/$replaced"             # replace a directory: all of the base's below it removed
  echo "fresh" > "$sys32/$replaced/new.dll"
  mkdir -p "$union/app" && echo "hello from the build" > "$union/app/hello.txt"   # add: Windows metadata of a new file
  ln "$union/app/hello.txt" "$union/app/hello-link.txt"           # a hard link
  echo "  modified Windows/System32/d0002/$modified, deleted d0003/$deleted, replaced $replaced/, added app/hello.txt (+ a hard link)"
  "$hcs" layer unprepare "$scratch" >/dev/null

  say "Committing the changes: the scratch layer's diff as an OCI Windows layer tar"
  "$hcs" layer export -f "$work/build.tar" "$scratch"
  "$hcs" layer deactivate "$scratch" >/dev/null
  trap 'rm -rf "$work"' EXIT
  echo "  $(tar -tf "$work/build.tar" 2>/dev/null | wc -l) entries, $(tar -tf "$work/build.tar" 2>/dev/null | grep -c '/\.wh\.') whiteouts"
  "$hcs" layer inspect "$work/build.tar" | grep -E "app/hello|d0002/$modified|\.wh\.|$replaced/new" | head -n 6 | sed 's/^/  /'

  say "Importing the diff as a child of the base, as a folder and as a CIM that forks the base's"
  "$hcs" layer import -f "$work/build.tar" --parent "$work/layers/base" "$work/layers/built"
  "$hcs" cim create -q -f "$work/build.tar" --parent "$work/cim/base" "$work/cim/built"
  "$hcs" cim verify "$work/cim/built"
  "$hcs" cim cat "$work/cim/built" Files/app/hello.txt | sed 's/^/  CIM: Files\/app\/hello.txt: /'
  "$hcs" layer export -f "$work/built.tar" "$work/layers/built"
  "$hcs" cim export -f "$work/built.cim.tar" "$work/cim/built"
  for f in built.tar built.cim.tar; do
    if cmp -s "$work/build.tar" "$work/$f"; then
      echo "  $f: byte-identical to the committed diff"
    else
      echo "  $f: differs from the committed diff" >&2; ok=0
    fi
  done
  [ $ok = 1 ] && note "ok  scratch → union changes → diff → child folder and forked CIM → tar: byte-identical"
else
  say "Skipping the scratch layer part: it needs root and loop devices (make demo installs the rest)"
fi

if [ "$(id -u)" = 0 ] && [ -e /dev/loop-control ] && command -v runc >/dev/null && [ -x /usr/bin/busybox ]; then
  say "Linux layers: two OCI layer tars → ext4 layer images (tar2ext4 -vhd, with dm-verity)"
  mkdir -p "$work/linux/base/bin" "$work/linux/app/etc"
  cp /usr/bin/busybox "$work/linux/base/bin/busybox"
  ln -s busybox "$work/linux/base/bin/sh"
  echo "hello from a layer stack" > "$work/linux/app/etc/hello"
  for l in base app; do
    tar --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name -C "$work/linux/$l" -cf "$work/linux/$l.tar" .
    "$hcs" tar2ext4 -q -i "$work/linux/$l.tar" -o "$work/linux/$l.vhd" -vhd -overlay -dm-verity -root-hash "$work/linux/$l.root"
    echo "  $l.vhd: $(stat -c %s "$work/linux/$l.vhd") bytes, dm-verity root $(cut -c1-16 "$work/linux/$l.root")…"
  done

  say "Mounting the stack over a new scratch disk (hcs layer mount) and running a container with runc"
  target="$work/linux/c1"
  "$hcs" layer mount --scratch "$work/linux/sandbox.vhd" --scratch-size 256M --target "$target" \
    "$work/linux/app.vhd" "$work/linux/base.vhd"
  unmount() { "$hcs" layer unmount "$target" >/dev/null 2>&1 || true; }
  trap 'unmount; rm -rf "$work"' EXIT
  (cd "$target" && runc spec && sed -i -e 's/"terminal": true/"terminal": false/' -e 's/"readonly": true/"readonly": false/' \
    -e 's|"sh"|"/bin/sh", "-c", "cat /etc/hello; echo written by the container > /etc/note"|' config.json)
  runc run --bundle "$target" "hcs-demo-$$" | sed 's/^/  container: /'
  echo "  the container's write is in the scratch disk's upper layer: $(cat "$target/upper/etc/note")"
  "$hcs" ocilayer diff -f "$work/linux/changes.tar" "$target/upper" >/dev/null   # the container exited: nothing writes
  echo "  its changes as an OCI layer diff: $(tar -tf "$work/linux/changes.tar" | tr '\n' ' ')"
  "$hcs" layer unmount "$target"
  trap 'rm -rf "$work"' EXIT
  note "ok  Linux: tar → ext4 layer images → union over a scratch → runc run → its changes as an OCI diff"

  say "The same layer stack as a container of the compute API (hcs run: runc create + start, a monitor, cgroup limits)"
  "$hcs" run --name "hcs-demo-run-$$" --memory 64M --layer "$work/linux/app.vhd" --layer "$work/linux/base.vhd" \
    -- /bin/sh -c 'cat /etc/hello; echo "memory limit: $(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max)"; exit 7' \
    | sed 's/^/  container: /' && rc=0 || rc=${PIPESTATUS[0]}
  echo "  hcs run exited $rc, the container's own exit status"
  [ "$rc" = 7 ] || { echo "demo: hcs run exited $rc, want 7" >&2; exit 1; }
  note "ok  compute: hcs run over the ext4 layer images, output and exit status (7) through the monitor"
  linux_done=1
else
  say "Skipping the Linux layer part: it needs root, loop devices, runc and busybox (make demo installs them)"
fi

if [ "$(id -u)" = 0 ] && command -v docker-registry >/dev/null; then
  say "Images: the layers as a Windows image built on Linux, pushed to a registry, pulled back, converted to CIMs"
  port=$((20000 + RANDOM % 20000))
  mkdir -p "$work/registry"
  printf 'version: 0.1\nlog: {level: warn, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: 127.0.0.1:%s}\n' \
    "$work/registry/storage" "$port" > "$work/registry/config.yml"
  docker-registry serve "$work/registry/config.yml" > "$work/registry/log" 2>&1 &
  regpid=$!
  trap 'kill "$regpid" 2>/dev/null; wait "$regpid" 2>/dev/null; rm -rf "$work"' EXIT
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  echo "  docker-registry (pid $regpid) on 127.0.0.1:$port"
  img="127.0.0.1:$port/demo/app:1"
  top="$work/child.tar.gz"; [ -f "$work/build.tar" ] && top="$work/build.tar"
  "$hcs" image --root "$work/store" append -q --base scratch --platform windows/amd64:10.0.20348.2113 --layer "$work/base.tar" -t demo/base:1
  "$hcs" image --root "$work/store" append --base demo/base:1 --layer "$top" -t "$img" | sed 's/^/  /'
  built=$("$hcs" image --root "$work/store" inspect -o json "$img" | grep -o '"digest":"sha256:[0-9a-f]*"' | head -n 1 | cut -d'"' -f4)
  "$hcs" image --root "$work/store" push -q "$img"
  "$hcs" image --root "$work/pulled" pull --platform windows/amd64 "$img" | sed 's/^/  /'
  pulled=$("$hcs" image --root "$work/pulled" inspect -o json "$img" | grep -o '"digest":"sha256:[0-9a-f]*"' | head -n 1 | cut -d'"' -f4)
  "$hcs" image --root "$work/pulled" convert "$img" --to cim --dir "$work/image-cims" | sed 's/^/  /'
  "$hcs" image --root "$work/pulled" save "$img" "oci:$work/image-layout:app" | sed 's/^/  /'
  if [ -n "$built" ] && [ "$built" = "$pulled" ]; then
    echo "  pulled back with the digest it was built with: $built"
    note "ok  image: Windows image built on Linux, pushed to docker-registry, pulled back with the same digest, converted to CIMs, saved as an OCI layout"
  else
    echo "  the pulled image's digest ($pulled) differs from the built one ($built)" >&2; ok=0
  fi
  if [ -n "${linux_done:-}" ]; then
    say "A Linux image: the busybox layer on scratch, pushed, pulled into a store of its own and run (hcs run --image)"
    limg="127.0.0.1:$port/demo/busybox:1"
    "$hcs" image --root "$work/store" append -q --base scratch --platform linux/amd64 --layer "$work/linux/base.tar" -t "$limg"
    "$hcs" image --root "$work/store" push -q "$limg"
    "$hcs" image --root "$work/linux-store" pull --platform linux/amd64 "$limg" | sed 's/^/  /'
    "$hcs" run --image "$limg" --root "$work/linux-store" --name "hcs-demo-image-$$" \
      -- /bin/sh -c 'echo "hello from the pulled image ($(/bin/busybox | head -n 1 | cut -d" " -f1-2))"; exit 3' \
      | sed 's/^/  container: /' && rc=0 || rc=${PIPESTATUS[0]}
    echo "  hcs run --image exited $rc, the container's own exit status"
    [ "$rc" = 3 ] || { echo "demo: hcs run --image exited $rc, want 3" >&2; exit 1; }
    note "ok  image: Linux image built on scratch, pushed, pulled into a new store and run with hcs run --image (exit status 3)"
  fi
  kill "$regpid"; wait "$regpid" 2>/dev/null || true
  trap 'rm -rf "$work"' EXIT
else
  say "Skipping the image part: it needs root and docker-registry (make demo installs it)"
fi

say "Summary"
printf '  %s\n' "${summary[@]}"
[ $ok = 1 ] || echo "  FAILED: see the messages above" >&2
[ $ok = 1 ] && say "Demo finished: folder and CIM layers round-tripped every entry and its Windows metadata${linux_done:+; a container ran from ext4 layer images}."
[ $ok = 1 ]

// Package compute runs Linux containers from layer stacks with runc: the engine
// under the root package's CreateContainer, OpenContainer, Container and Process.
//
// # A container
//
// Create prepares the container's root file system (a writable scratch over its
// read-only layers: ext4 layer images through loop devices, directory layers, or
// Windows layer folders whose Files/ hold Linux files), writes an OCI bundle
// (runtime-spec) whose linux.resources carry the limits, and starts the
// container's monitor. The container then exists, created but empty, as a
// compute system does after HCS's create.
//
// The first process (Start) is the container's init: the monitor runs
// `runc run --detach` (pid file; a console socket when the process has a
// terminal), one runc process where containerd's shim runs `runc create` and
// `runc start`. Later processes (Exec) are `runc exec --detach`. The container
// stops when its init exits; the monitor then removes the runc container's
// cgroups and state itself (what `runc delete` of a stopped container with its
// own PID namespace does, without a runc process), unmounts the root file
// system and records the stop.
//
// # The monitor
//
// Every container has a monitor: a small process, the current binary
// re-executed (call [MaybeRunHelper] first in main and TestMain), that is the
// child subreaper of the container's processes, as containerd's runc shim is.
// It runs runc for the container, so init and every exec'd process become its
// children when runc exits, and it reaps them. It records each exit atomically
// (staged, synced and renamed) in the container's state directory, where Wait
// reads it from any process, and it answers requests (start, exec, signal,
// wait, resize) on an abstract unix socket. A container thus outlives the
// process that created it, and [Open] from any other process drives it.
//
// A caller that waits for its container and removes it (hcs run) may run the
// monitor itself instead, on goroutines ([InProcessMonitor]), as `runc run`
// without --detach supervises its container: the same monitor, serving the
// same socket, without a process to start and call. The caller then reaps only
// the container's processes and its runc commands, never its other children;
// should it die first, its container is one whose monitor died.
//
// # State and crashes
//
// Each container has a directory StateDir()/<id>/ (StateDir is compute/
// under the state root, /run/hostcompute or $HOSTCOMPUTE_STATE_DIR, unless
// $HOSTCOMPUTE_COMPUTE_STATE_DIR names another): container.json (the record), lock (an flock held while the
// container is made or removed), monitor.lock (held by the living monitor),
// bundle/ (config.json), root/ (the mounted root file system), procs/ (one
// record per process and one per exit), stopped.json, and runc's own state under
// StateDir()/runc. Open reconciles the record with what is alive: a container
// whose creator died before it was made, or whose monitor died, is cleaned up
// there and then — its processes killed, the runc container deleted, its
// cgroups removed, its mounts and loop devices released and its state
// directory removed — and Open reports ErrNotFound.
package compute

package hostcompute

import "time"

// Layer is a read-only layer of a container: an ext4 layer image (a file, or a
// folder holding layer.vhd), a directory tree, or a Windows layer folder whose
// Files/ holds Linux files. ID is informational.
type Layer struct {
	ID   string
	Path string
}

// MappedDir maps a host directory into a container: a recursive bind mount,
// read-only when ReadOnly is set. Per-directory storage limits and
// CreateInUtilityVM need a utility VM: CreateContainer refuses them.
type MappedDir struct {
	HostPath          string
	ContainerPath     string
	ReadOnly          bool
	BandwidthMaximum  uint64
	IOPSMaximum       uint64
	CreateInUtilityVM bool
}

// HvRuntime holds the settings of a Hyper-V isolated container; Hyper-V
// isolation is not available on Linux hosts (CreateContainer refuses it).
type HvRuntime struct {
	ImagePath           string `json:",omitempty"`
	SkipTemplate        bool   `json:",omitempty"`
	LinuxInitrdFile     string `json:",omitempty"`
	LinuxKernelFile     string `json:",omitempty"`
	LinuxBootParameters string `json:",omitempty"`
}

// ContainerConfig is the input of CreateContainer. On Linux:
//   - LayerFolderPath is the writable scratch folder and Layers the read-only
//     layers, the top-most first (see Layer): the container's root is the
//     scratch over them (sandbox.vhdx in the folder over ext4 images; the
//     folder's upper/ and work/ over directory layers);
//   - ProcessorCount pins the container to the first N processors;
//     ProcessorWeight 1..10000 becomes cgroup CPU shares; ProcessorMaximum
//     (percent of the host's total processor time, 1..100) a CFS quota;
//     MemoryMaximumInMB the memory limit (swap included); StorageIOPSMaximum and
//     StorageBandwidthMaximum throttle the scratch's disk; StorageSandboxSize
//     is the scratch disk's size (grown when smaller);
//   - MappedDirectories are bind mounts; HostName the UTS host name;
//     EndpointList names network endpoints whose namespace the container joins;
//   - HvPartition and HvRuntime are refused (no Hyper-V); SystemType, Name,
//     Owner, IsDummy, VolumePath, IgnoreFlushesDuringBoot, Credentials,
//     SandboxPath and Servicing are kept for compatibility and not used.
type ContainerConfig struct {
	SystemType              string      // HCS requires this to be hard-coded to "Container"
	Name                    string      // Name of the container. We use the docker ID.
	Owner                   string      // The management platform that created this container
	IsDummy                 bool        // Used for development purposes.
	VolumePath              string      // Windows volume path for scratch space
	IgnoreFlushesDuringBoot bool        // Optimization hint for container startup in Windows
	LayerFolderPath         string      // Where the layer folders are located
	Layers                  []Layer     // List of storage layers
	Credentials             string      `json:",omitempty"` // Credentials information
	ProcessorCount          uint32      `json:",omitempty"` // Number of processors to assign to the container.
	ProcessorWeight         uint64      `json:",omitempty"` // CPU Shares 0..10000 on Windows; where 0 will be omitted and HCS will default.
	ProcessorMaximum        int64       `json:",omitempty"` // CPU maximum usage percent 1..100
	StorageIOPSMaximum      uint64      `json:",omitempty"` // Maximum Storage IOPS
	StorageBandwidthMaximum uint64      `json:",omitempty"` // Maximum Storage Bandwidth in bytes per second
	StorageSandboxSize      uint64      `json:",omitempty"` // Size in bytes that the container system drive should be expanded to if smaller
	MemoryMaximumInMB       int64       `json:",omitempty"` // Maximum memory available to the container in Megabytes
	HostName                string      // Hostname
	MappedDirectories       []MappedDir // List of mapped directories (volumes/mounts)
	SandboxPath             string      // Location of unmounted sandbox (used for Hyper-V containers)
	HvPartition             bool        // True if it a Hyper-V Container
	EndpointList            []string    // List of networking endpoints to be attached to container
	HvRuntime               *HvRuntime  // Hyper-V container settings
	Servicing               bool        // True if this container is for servicing
}

// ProcessConfig is the input of Container.CreateProcess. On Linux:
//   - the arguments are CommandLine split as a POSIX shell splits words, with
//     no expansion (compute.SplitCommandLine: blanks separate, '…' is literal,
//     "…" honours \\ \" \$ \` escapes, a backslash outside quotes escapes the
//     next character); ApplicationName, when set, replaces the first argument
//     (or is the only one when CommandLine is empty); the first argument is
//     looked up in the container's PATH;
//   - Environment becomes the process's environment (PATH is added when
//     missing); WorkingDirectory its directory (default "/");
//   - EmulateConsole gives it a pseudo-terminal of ConsoleSize [height, width]:
//     Stdio's stdin and stdout are then the terminal's master;
//   - CreateStdInPipe, CreateStdOutPipe and CreateStdErrPipe give it pipes;
//     without them its descriptors are /dev/null.
type ProcessConfig struct {
	ApplicationName  string
	CommandLine      string
	WorkingDirectory string
	Environment      map[string]string
	EmulateConsole   bool
	CreateStdInPipe  bool
	CreateStdOutPipe bool
	CreateStdErrPipe bool
	ConsoleSize      [2]int
}

// MemoryStats holds the memory statistics for a container
type MemoryStats struct {
	UsageCommitBytes            uint64 `json:"MemoryUsageCommitBytes,omitempty"`
	UsageCommitPeakBytes        uint64 `json:"MemoryUsageCommitPeakBytes,omitempty"`
	UsagePrivateWorkingSetBytes uint64 `json:"MemoryUsagePrivateWorkingSetBytes,omitempty"`
}

// ProcessorStats holds the processor statistics for a container
type ProcessorStats struct {
	TotalRuntime100ns  uint64 `json:",omitempty"`
	RuntimeUser100ns   uint64 `json:",omitempty"`
	RuntimeKernel100ns uint64 `json:",omitempty"`
}

// StorageStats holds the storage statistics for a container
type StorageStats struct {
	ReadCountNormalized  uint64 `json:",omitempty"`
	ReadSizeBytes        uint64 `json:",omitempty"`
	WriteCountNormalized uint64 `json:",omitempty"`
	WriteSizeBytes       uint64 `json:",omitempty"`
}

// NetworkStats holds the network statistics for a container
type NetworkStats struct {
	BytesReceived          uint64 `json:",omitempty"`
	BytesSent              uint64 `json:",omitempty"`
	PacketsReceived        uint64 `json:",omitempty"`
	PacketsSent            uint64 `json:",omitempty"`
	DroppedPacketsIncoming uint64 `json:",omitempty"`
	DroppedPacketsOutgoing uint64 `json:",omitempty"`
	EndpointId             string `json:",omitempty"` //nolint:revive // hcsshim's name
	InstanceId             string `json:",omitempty"` //nolint:revive // hcsshim's name
}

// Statistics is the structure returned by a statistics call on a container
type Statistics struct {
	Timestamp          time.Time      `json:",omitempty"`
	ContainerStartTime time.Time      `json:",omitempty"`
	Uptime100ns        uint64         `json:",omitempty"`
	Memory             MemoryStats    `json:",omitempty"`
	Processor          ProcessorStats `json:",omitempty"`
	Storage            StorageStats   `json:",omitempty"`
	Network            []NetworkStats `json:",omitempty"`
}

module hostcompute.test/peers/hcsshim-tar2ext4-verity

go 1.26

require github.com/Microsoft/hcsshim v0.13.0

require (
	github.com/containerd/cgroups/v3 v3.0.3 // indirect
	github.com/golang/groupcache v0.0.0-20210331224755-41bb18bfe9da // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/sirupsen/logrus v1.9.3 // indirect
	go.opencensus.io v0.24.0 // indirect
	golang.org/x/sys v0.32.0 // indirect
	google.golang.org/protobuf v1.35.2 // indirect
)

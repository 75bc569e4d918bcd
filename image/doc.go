// Package image pulls, pushes, saves, loads, builds and converts Windows and Linux
// container images, over go-containerregistry (remote, layout, tarball, mutate and
// the Docker config file keychain) and the engine's layer store.
//
// # Model
//
// A Store keeps an image's content — indexes, manifests, configs and layer blobs —
// by digest in an OCI image layout at <root>/content, with the images named by the
// org.opencontainers.image.ref.name annotation of its index.json, so that skopeo,
// umoci, crane or any OCI tool can read it. The layers are unpacked into a Layers
// store (the engine's store.Store through StoreLayers), one committed layer per
// chainID over the layer of the previous chainID: images that share layers share
// their unpacked form, and a chainID already present is not unpacked again.
// Windows layers are kept losslessly as layer folders (pkg/ociwclayer), Linux
// layers are applied over their parents with OCI whiteouts (pkg/ocilayer).
//
// # Sources and destinations
//
// References are registry references (v2 API, OCI and Docker media types,
// indexes), oci:DIR[:TAG] (an OCI image layout) and docker-archive:FILE[:TAG] (a
// docker save tar); see Ref. From an index one image is chosen for a platform
// (WithPlatform, matching Windows os.version as containerd does) unless the whole
// index is kept (WithAllPlatforms).
//
// # Integrity
//
// Every blob enters through a partial file named by its digest
// (<root>/content-ingest), is checked against its digest and size, synced and
// renamed into the layout: a blob in the layout is always complete and verified.
// An interrupted download resumes from its partial file with an HTTP Range
// request. Uncompressed layers are checked against the config's diffIDs. A pull
// that fails names the image, the blob and (inside the cause) the tar entry and
// offset, and leaves no layer and no name behind. Push and Save copy manifests and
// blobs byte for byte, so digests do not change.
//
// # Building
//
// Append makes a Windows image on Linux from a base (or Scratch) and a directory,
// a plain tar or a Windows layer tar; Commit takes the changes of a writable
// layer of the store. Convert makes CIMs or ext4 layer images (with dm-verity)
// of an image's layers ahead of time. All three are deterministic: the same
// inputs give the same bytes.
//
// # Concurrency
//
// A Store may be used from several goroutines and processes: ingest files are
// locked while written, and index.json is rewritten under <root>/content.lock.
package image

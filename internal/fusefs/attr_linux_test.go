package fusefs

import "github.com/hanwen/go-fuse/v2/fuse"

func fuseAttr(mode uint32) fuse.Attr { return fuse.Attr{Mode: mode} }

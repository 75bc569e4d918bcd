package cimfs

import (
	"os"
)

// pageCache keeps recently used 4 KiB pages of the writer's spill files in
// memory, writing dirty ones back when they are evicted, so most reads and
// writes of the tree and the tables cost no system call. Its size is fixed
// (pageCacheBytes), whatever the image's size.
type pageCache struct {
	pages map[pageKey]*page
	head  page // sentinel of the LRU list: head.next is the most recent
	max   int
	free  []*page
	err   error // first failed write-back
}

const (
	pageSize       = 4096
	pageCacheBytes = 8 << 20
)

type pageKey struct {
	f *os.File
	n int64
}

type page struct {
	key        pageKey
	data       [pageSize]byte
	dirty      bool
	prev, next *page
}

func newPageCache(bytes int) *pageCache {
	c := &pageCache{pages: map[pageKey]*page{}, max: max(bytes/pageSize, 8)}
	c.head.prev, c.head.next = &c.head, &c.head
	return c
}

func (c *pageCache) unlink(p *page) {
	p.prev.next, p.next.prev = p.next, p.prev
}

func (c *pageCache) pushFront(p *page) {
	p.prev, p.next = &c.head, c.head.next
	c.head.next.prev = p
	c.head.next = p
}

// get returns page n of f, reading it unless whole says it is about to be
// overwritten entirely. Beyond the end of f a page reads as zeros.
func (c *pageCache) get(f *os.File, n int64, whole bool) (*page, error) {
	k := pageKey{f, n}
	if p := c.pages[k]; p != nil {
		c.unlink(p)
		c.pushFront(p)
		return p, nil
	}
	var p *page
	if len(c.pages) >= c.max {
		p = c.head.prev
		c.unlink(p)
		delete(c.pages, p.key)
		if p.dirty {
			if _, err := p.key.f.WriteAt(p.data[:], p.key.n*pageSize); err != nil {
				return nil, err
			}
		}
	} else if len(c.free) > 0 {
		p = c.free[len(c.free)-1]
		c.free = c.free[:len(c.free)-1]
	} else {
		p = new(page)
	}
	p.key, p.dirty = k, false
	if whole {
		clear(p.data[:])
	} else if err := readBlock(f, p.data[:], n*pageSize); err != nil {
		c.free = append(c.free, p)
		return nil, err
	}
	c.pages[k] = p
	c.pushFront(p)
	return p, nil
}

// readAt reads len(p) bytes of f at off through the cache.
func (c *pageCache) readAt(f *os.File, b []byte, off int64) error {
	for len(b) > 0 {
		n, o := off/pageSize, int(off%pageSize)
		p, err := c.get(f, n, false)
		if err != nil {
			return err
		}
		k := copy(b, p.data[o:])
		b, off = b[k:], off+int64(k)
	}
	return nil
}

// writeAt writes b to f at off through the cache.
func (c *pageCache) writeAt(f *os.File, b []byte, off int64) error {
	for len(b) > 0 {
		n, o := off/pageSize, int(off%pageSize)
		p, err := c.get(f, n, o == 0 && len(b) >= pageSize)
		if err != nil {
			return err
		}
		k := copy(p.data[o:], b)
		p.dirty = true
		b, off = b[k:], off+int64(k)
	}
	return nil
}

// drop forgets the pages of f without writing them back (f is being removed).
func (c *pageCache) drop(f *os.File) {
	for k, p := range c.pages {
		if k.f == f {
			c.unlink(p)
			delete(c.pages, k)
			c.free = append(c.free, p)
		}
	}
}

package scenario

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// memoryFiles returns the regular files (relative paths) of the memory
// file set in the host's checkout, computed once.
func (r *runner) memoryFiles() []string {
	if r.memFiles != nil {
		return r.memFiles
	}
	root := r.cfg.Corpus.Path(r.cfg.Corpus.HostRoot)
	files := []string{}
	for _, g := range r.cfg.Corpus.MemoryPaths {
		matches, _ := filepath.Glob(filepath.Join(root, g))
		for _, m := range matches {
			filepath.WalkDir(m, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					rel, _ := filepath.Rel(root, p)
					files = append(files, rel)
				}
				return nil
			})
		}
	}
	slices.Sort(files)
	r.memFiles = slices.Compact(files)
	return r.memFiles
}

// pageCache returns Cached + Buffers from /proc/meminfo, in bytes.
func pageCache() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && (fields[0] == "Cached:" || fields[0] == "Buffers:") {
			n, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("meminfo: %w", err)
			}
			total += n << 10
		}
	}
	return total, sc.Err()
}

// resident returns the bytes of a file's pages in the page cache, asked
// through a mapping of the file (through an overlay mount this is the
// backing file's page cache).
func resident(p string) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return 0, err
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return 0, fmt.Errorf("mmap %s: %w", p, err)
	}
	defer unix.Munmap(data)
	page := os.Getpagesize()
	vec := make([]byte, (len(data)+page-1)/page)
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&data[0])), uintptr(len(data)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		return 0, fmt.Errorf("mincore %s: %w", p, errno)
	}
	var n int64
	for _, v := range vec {
		if v&1 != 0 {
			n += int64(page)
		}
	}
	return n, nil
}

// residentSet sums resident over files under root, skipping files the
// root does not have.
func residentSet(root string, files []string) (int64, error) {
	var total int64
	for _, f := range files {
		n, err := resident(filepath.Join(root, f))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// memory measures page-cache growth when a container reads files the
// host has read.
func (r *runner) memory(_ context.Context, bs *benchStore) error {
	c := r.cfg.Corpus
	img, ok := bs.images[c.StartImage]
	if !ok {
		return fmt.Errorf("image %s not pulled", c.StartImage)
	}
	ctr, err := bs.store.CreateContainer("", nil, img, "", "", nil)
	if err != nil {
		return fmt.Errorf("create container: %w", err)
	}
	defer bs.store.DeleteContainer(ctr.ID)
	mnt, err := bs.store.Mount(ctr.ID, "")
	if err != nil {
		return fmt.Errorf("mount container: %w", err)
	}
	defer bs.store.Unmount(ctr.ID, true)
	files := r.memoryFiles()
	if err := dropCaches(); err != nil {
		return err
	}
	hostBytes, err := r.hostRead()
	if err != nil {
		return err
	}
	before, err := pageCache()
	if err != nil {
		return err
	}
	resBefore, err := residentSet(mnt, files)
	if err != nil {
		return err
	}
	var read int64
	for _, f := range files {
		n, err := readFile(filepath.Join(mnt, f))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("container read: %w", err)
		}
		read += n
	}
	after, err := pageCache()
	if err != nil {
		return err
	}
	resAfter, err := residentSet(mnt, files)
	if err != nil {
		return err
	}
	r.add("memory", bs.label, "page-cache growth", float64(after-before), "bytes", true)
	r.add("memory", bs.label, "file data newly cached (mincore)", float64(resAfter-resBefore), "bytes", true)
	r.add("memory", bs.label, "bytes read by the container", float64(read), "bytes", false)
	r.logf("[memory] %s: host read %s in %d files; container read %s: page cache +%s, file data +%s",
		bs.label, fmtBytes(hostBytes), len(files), fmtBytes(read), fmtBytes(after-before), fmtBytes(resAfter-resBefore))
	return nil
}

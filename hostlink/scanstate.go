package hostlink

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/cfs-storage/cfs-storage/internal/atomicfile"
)

// The scan state file remembers the last cheap pass (see scanState) in
// the cache directory, so that a new process's pass only lists the
// objects/xx directories that changed. All integers little-endian:
//
//	"HLS1", objects dir dev (8), objects dir ino (8), directory count (4)
//	per directory: name (2), mtime ns (8), ino (8), object count (4),
//	               objects: name (32), size (8), mtime ns (8)
//	CRC-32 (IEEE) of everything before (4)
const (
	scanMagic    = "HLS1"
	scanHdrSize  = 4 + 8 + 8 + 4
	scanDirSize  = 2 + 8 + 8 + 4
	scanObjSize  = 32 + 8 + 8
	scanFileName = "scan.v1"
)

// marshal encodes s, directories sorted by name.
func (s *scanState) marshal() []byte {
	names := make([]string, 0, len(s.dirs))
	size := scanHdrSize + 4
	for name, d := range s.dirs {
		names = append(names, name)
		size += scanDirSize + len(d.objs)*scanObjSize
	}
	sort.Strings(names)
	le := binary.LittleEndian
	b := make([]byte, 0, size)
	b = append(b, scanMagic...)
	b = le.AppendUint64(b, s.dev)
	b = le.AppendUint64(b, s.ino)
	b = le.AppendUint32(b, uint32(len(names)))
	for _, name := range names {
		d := s.dirs[name]
		b = append(b, name...)
		b = le.AppendUint64(b, uint64(d.mtime))
		b = le.AppendUint64(b, d.ino)
		b = le.AppendUint32(b, uint32(len(d.objs)))
		for _, o := range d.objs {
			b = append(b, o.sum[:]...)
			b = le.AppendUint64(b, uint64(o.size))
			b = le.AppendUint64(b, uint64(o.mtime))
		}
	}
	return le.AppendUint32(b, crc32.ChecksumIEEE(b))
}

// unmarshalScanState decodes a scan state file; ok is false for anything
// damaged or truncated (the pass then starts from nothing).
func unmarshalScanState(b []byte) (*scanState, bool) {
	le := binary.LittleEndian
	if len(b) < scanHdrSize+4 || string(b[:4]) != scanMagic ||
		le.Uint32(b[len(b)-4:]) != crc32.ChecksumIEEE(b[:len(b)-4]) {
		return nil, false
	}
	b = b[:len(b)-4]
	s := &scanState{dev: le.Uint64(b[4:]), ino: le.Uint64(b[12:]), dirs: map[string]*dirScan{}}
	ndirs := le.Uint32(b[20:])
	b = b[scanHdrSize:]
	for i := uint32(0); i < ndirs; i++ {
		if len(b) < scanDirSize {
			return nil, false
		}
		name := string(b[:2])
		d := &dirScan{mtime: int64(le.Uint64(b[2:])), ino: le.Uint64(b[10:])}
		n := le.Uint32(b[18:])
		b = b[scanDirSize:]
		if uint64(len(b)) < uint64(n)*scanObjSize {
			return nil, false
		}
		d.objs = make([]objectStat, n)
		for j := range d.objs {
			copy(d.objs[j].sum[:], b[:32])
			d.objs[j].size = int64(le.Uint64(b[32:]))
			d.objs[j].mtime = int64(le.Uint64(b[40:]))
			b = b[scanObjSize:]
		}
		s.dirs[name] = d
	}
	if len(b) != 0 {
		return nil, false
	}
	return s, true
}

// loadScanState reads the scan state file of cacheDir; nil when there is
// none or it is damaged.
func loadScanState(cacheDir string) (*scanState, error) {
	data, err := os.ReadFile(filepath.Join(cacheDir, scanFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading scan state: %w", err)
	}
	s, ok := unmarshalScanState(data)
	if !ok {
		return nil, nil
	}
	return s, nil
}

// saveScanState replaces the scan state file of cacheDir atomically.
func saveScanState(cacheDir string, s *scanState) error {
	// A cache: not synced.
	o := atomicfile.Options{Pattern: ".scan-*", Flush: atomicfile.FlushNone}
	if err := atomicfile.WriteFile(filepath.Join(cacheDir, scanFileName), s.marshal(), o); err != nil {
		return fmt.Errorf("saving scan state: %w", err)
	}
	return nil
}

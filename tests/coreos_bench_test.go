package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	storage "go.podman.io/storage"
	"go.podman.io/storage/types"
	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// benchHostFiles is the number and size of the host files the benchmark
// layer shares.
const (
	benchHostFiles = 500
	benchFileSize  = 16 << 10
)

// BenchmarkCoreOSPull applies a layer of benchHostFiles files, all with
// contents of the host repository, in the CoreOS layout on XFS
// (reflink=1), with each host_link mode, into a fresh store each
// iteration. It reports the time per layer and the disk space the layer
// took (free blocks before and after, synced).
func BenchmarkCoreOSPull(b *testing.B) {
	for _, fstype := range []string{"xfs", "ext4"} {
		for _, link := range []string{"auto", "reflink", "copy", "off"} {
			b.Run(fstype+"/"+link, func(b *testing.B) { benchCoreOSPull(b, fstype, link) })
		}
	}
}

func benchCoreOSPull(b *testing.B, fstype, link string) {
	testutil.RequireRoot(b)
	l, layerTar := benchLayout(b, fstype)
	var newBytes int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		graphRoot := filepath.Join(l.varDir, fmt.Sprintf("lib/containers/bench-%s-%d", link, i))
		store, err := storage.GetStore(types.StoreOptions{
			RunRoot:            filepath.Join(b.TempDir(), "run"),
			GraphRoot:          graphRoot,
			GraphDriverName:    "cfs",
			GraphDriverOptions: []string{"cfs.host_repo=" + l.repo, "cfs.host_link=" + link},
		})
		if err != nil {
			b.Fatal(err)
		}
		// Build the host index and hash the host objects outside the
		// timing: a first layer with a content of the shared size that
		// the host lacks makes every candidate hashed (and cached).
		warm, _ := tarfix.Tar(tarfix.File("warm", string(bytes.Repeat([]byte("w"), benchFileSize))))
		if _, _, err := store.PutLayer("", "", nil, "", false, nil, bytes.NewReader(warm)); err != nil {
			b.Fatal(err)
		}
		free := freeBytes(b, l.varDir)
		b.StartTimer()
		if _, _, err := store.PutLayer("", "", nil, "", false, nil, bytes.NewReader(layerTar)); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		newBytes += free - freeBytes(b, l.varDir)
		store.Shutdown(true)
		b.StartTimer()
	}
	b.ReportMetric(float64(newBytes)/float64(b.N)/(1<<20), "diskMB/op")
}

// benchLayout builds the CoreOS layout with a host repository of
// benchHostFiles distinct files, and a layer tar with the same contents.
func benchLayout(b *testing.B, fstype string) (coreOSLayout, []byte) {
	b.Helper()
	dev := ""
	if fstype == "xfs" {
		dev = testutil.LoopFS(b, 1<<30, "mkfs.xfs", "-q", "-f", "-m", "reflink=1")
	} else {
		dev = testutil.LoopFS(b, 512<<20, "mkfs.ext4", "-q", "-F")
	}
	dir := b.TempDir()
	l := coreOSLayout{fs: filepath.Join(dir, "fs"), sysroot: filepath.Join(dir, "sysroot"), varDir: filepath.Join(dir, "var")}
	for _, d := range []string{l.fs, l.sysroot, l.varDir} {
		os.Mkdir(d, 0o755)
	}
	testutil.Mount(b, dev, l.fs, fstype, 0, "")
	src := b.TempDir()
	entries := []tarfix.Entry{tarfix.Dir("usr/"), tarfix.Dir("usr/lib/")}
	for i := 0; i < benchHostFiles; i++ {
		content := bytes.Repeat([]byte(fmt.Sprintf("host file %06d ", i)), benchFileSize/17+1)[:benchFileSize]
		name := fmt.Sprintf("usr/lib/f%04d", i)
		os.MkdirAll(filepath.Join(src, "usr/lib"), 0o755)
		if err := os.WriteFile(filepath.Join(src, name), content, 0o644); err != nil {
			b.Fatal(err)
		}
		entries = append(entries, tarfix.File(name, string(content)))
	}
	repo := filepath.Join(l.fs, "sysroot/ostree/repo")
	for _, d := range []string{"sysroot/ostree", "var/lib/containers"} {
		if err := os.MkdirAll(filepath.Join(l.fs, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"init", "--repo=" + repo, "--mode=bare"},
		{"commit", "--repo=" + repo, "--branch=host", "--tree=dir=" + src},
	} {
		if out, err := exec.Command(testutil.RequireTool(b, "ostree"), args...).CombinedOutput(); err != nil {
			b.Fatalf("ostree %v: %v\n%s", args, err, out)
		}
	}
	testutil.Mount(b, filepath.Join(l.fs, "sysroot"), l.sysroot, "", unix.MS_BIND, "")
	testutil.Mount(b, "", l.sysroot, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, "")
	testutil.Mount(b, filepath.Join(l.fs, "var"), l.varDir, "", unix.MS_BIND, "")
	testutil.Mount(b, "", l.fs, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, "")
	l.repo = filepath.Join(l.sysroot, "ostree/repo")
	layerTar, err := tarfix.Tar(entries...)
	if err != nil {
		b.Fatal(err)
	}
	return l, layerTar
}

// freeBytes returns the free space of the filesystem holding p, after a
// sync so that delayed allocations are counted.
func freeBytes(b *testing.B, p string) int64 {
	b.Helper()
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	unix.Syncfs(int(f.Fd()))
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err != nil {
		b.Fatal(err)
	}
	return int64(st.Bfree) * st.Bsize
}

package tests

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	storage "go.podman.io/storage"
	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
	"github.com/cfs-storage/cfs-storage/driver"
	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// hostFiles are the host's files: contents a container layer shares.
var hostFiles = map[string]string{
	"usr/lib/libshared.so": strings.Repeat("a shared library ", 2000),
	"usr/bin/tool":         strings.Repeat("a shared binary ", 500),
	"etc/host-only.conf":   strings.Repeat("only on the host ", 50),
}

// makeHostRepo commits hostFiles into a real ostree repository of the
// given mode with Debian's ostree and returns its path.
func makeHostRepo(t *testing.T, mode string) string {
	t.Helper()
	return testutil.OstreeRepo(t, mode, hostFiles)
}

// TestHostLinking pulls a layer that shares contents with a real ostree
// repository (with other owners and modes than the host's) and checks
// that with hard links the store's objects are the host's inodes, with
// copies they are not, the container sees the layer's metadata and
// content, the host repository is untouched (ostree fsck, every object's
// metadata), and after `ostree prune` of the host commit the container
// still reads everything.
func TestHostLinking(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct{ repoMode, link string }{
		{"bare", "auto"}, {"bare", "hardlink"}, {"bare-user", "auto"}, {"bare", "copy"},
	} {
		t.Run(tc.repoMode+"/"+tc.link, func(t *testing.T) {
			repo := makeHostRepo(t, tc.repoMode)
			before := testutil.OstreeObjectState(t, repo)
			store := openStoreOpts(t, "cfs", "cfs.host_repo="+repo, "cfs.host_link="+tc.link)
			layer, ext := putHostSharingLayer(t, store)
			for _, p := range []string{"usr/lib/libshared.so", "usr/bin/tool"} {
				obj := ext.Objects().Path(fsverity.DigestBytes([]byte(hostFiles[p])))
				shared := sharesInodeWithRepo(t, obj, repo)
				if want := tc.link != "copy"; shared != want {
					t.Errorf("%s: object shares the host inode = %v, want %v", p, shared, want)
				}
			}
			testutil.OstreeFsck(t, repo)
			if after := testutil.OstreeObjectState(t, repo); !mapsEqual(before, after) {
				t.Fatalf("host objects changed:\nbefore %v\nafter  %v", before, after)
			}
			if out, err := exec.Command("ostree", "refs", "--repo="+repo, "--delete", "host").CombinedOutput(); err != nil {
				t.Fatalf("delete ref: %v\n%s", err, out)
			}
			if out, err := exec.Command("ostree", "prune", "--repo="+repo, "--refs-only").CombinedOutput(); err != nil {
				t.Fatalf("ostree prune: %v\n%s", err, out)
			}
			checkContainerFiles(t, store, layer.ID)
		})
	}
}

func sharesInodeWithRepo(t *testing.T, obj, repo string) bool {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(obj, &st); err != nil {
		t.Fatalf("object %s: %v", obj, err)
	}
	paths, _ := filepath.Glob(filepath.Join(repo, "objects", "*", "*.file"))
	for _, p := range paths {
		var hs unix.Stat_t
		if unix.Stat(p, &hs) == nil && hs.Ino == st.Ino && hs.Dev == st.Dev {
			return true
		}
	}
	return false
}

func checkContainerFiles(t *testing.T, store storage.Store, layerID string) {
	t.Helper()
	_, mnt, unmount := mountNewContainer(t, store, layerID)
	defer unmount()
	for p, content := range map[string]string{"usr/lib/libshared.so": hostFiles["usr/lib/libshared.so"], "usr/bin/tool": hostFiles["usr/bin/tool"]} {
		got, err := os.ReadFile(filepath.Join(mnt, p))
		if err != nil || string(got) != content {
			t.Fatalf("%s in the container after prune: %v (%d bytes)", p, err, len(got))
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(mnt, "usr/bin/tool"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o7777 != 0o4711 || st.Uid != 1000 {
		t.Errorf("usr/bin/tool in the container: mode %o uid %d, want the layer's 4711 and 1000", st.Mode&0o7777, st.Uid)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// putHostSharingLayer puts a layer holding two of hostFiles' contents
// (under other owners and modes than the host's) and one of its own into
// a cfs store, and returns it with the driver's extension.
func putHostSharingLayer(t *testing.T, store storage.Store) (*storage.Layer, driver.Extension) {
	t.Helper()
	layerTar, err := tarfix.Tar(
		tarfix.Dir("usr/"), tarfix.Dir("usr/lib/"), tarfix.Dir("usr/bin/"),
		tarfix.FileMode("usr/lib/libshared.so", hostFiles["usr/lib/libshared.so"], 0o644, 0, 0),
		tarfix.FileMode("usr/bin/tool", hostFiles["usr/bin/tool"], 0o4711, 1000, 1000),
		tarfix.File("new-in-container", strings.Repeat("not on the host ", 100)),
	)
	if err != nil {
		t.Fatal(err)
	}
	layer, _, err := store.PutLayer("", "", nil, "", false, nil, bytes.NewReader(layerTar))
	if err != nil {
		t.Fatal(err)
	}
	gd, err := store.GraphDriver()
	if err != nil {
		t.Fatal(err)
	}
	ext, ok := driver.AsExtension(gd)
	if !ok {
		t.Fatal("store's driver is not cfs")
	}
	return layer, ext
}

// TestDamagedHostObject: a host object whose bytes no longer match its
// ostree name (disk damage, simulated by flipping a byte in place) is
// matched by its name, as documented, and shared as the host uses it; the
// store's fsck names it as corrupt, as ostree fsck does on the host side.
func TestDamagedHostObject(t *testing.T) {
	testutil.RequireRoot(t)
	repo := makeHostRepo(t, "bare")
	content := []byte(hostFiles["usr/lib/libshared.so"])
	var damaged string
	paths, _ := filepath.Glob(filepath.Join(repo, "objects", "*", "*.file"))
	for _, p := range paths {
		if data, err := os.ReadFile(p); err == nil && bytes.Equal(data, content) {
			damaged = p
		}
	}
	if damaged == "" {
		t.Fatal("no host object holds libshared.so's content")
	}
	f, err := os.OpenFile(damaged, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{content[100] ^ 0xff}, 100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command("ostree", "fsck", "--repo="+repo).CombinedOutput(); err == nil {
		t.Fatalf("ostree fsck passes a damaged object; the test damaged nothing:\n%s", out)
	}

	store := openStoreOpts(t, "cfs", "cfs.host_repo="+repo, "cfs.host_link=auto")
	_, ext := putHostSharingLayer(t, store)
	d := fsverity.DigestBytes(content)
	if !sharesInodeWithRepo(t, ext.Objects().Path(d), repo) {
		t.Fatal("the damaged host object was not linked: lookups read host objects after all?")
	}
	rep, err := ext.Objects().Fsck(context.Background(), dedup.FsckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Corrupt) != 1 || rep.Corrupt[0].Digest != d {
		t.Fatalf("store fsck corrupt objects %+v, want exactly the linked damaged one %s", rep.Corrupt, d)
	}
}

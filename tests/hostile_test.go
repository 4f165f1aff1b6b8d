package tests

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	storage "go.podman.io/storage"

	"github.com/cfs-storage/cfs-storage/driver"
	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// hostileCase is a layer tar meant to break out of or break the store.
// ok says whether it is valid (the OCI-defined result), and check, if
// set, inspects the mounted result of a valid one.
type hostileCase struct {
	name  string
	tar   func(outside string) []byte
	ok    bool
	check func(t *testing.T, root string)
}

func tarOf(entries ...tarfix.Entry) func(string) []byte {
	return func(string) []byte {
		b, err := tarfix.Tar(entries...)
		if err != nil {
			panic(err)
		}
		return b
	}
}

func hostileCases() []hostileCase {
	deep := strings.Repeat("d/", 1000) + "f"
	return []hostileCase{
		{name: "dotdot path", tar: func(out string) []byte {
			return tarOf(tarfix.File("../../../../../../../.."+out+"/escaped", "x"))(out)
		}},
		{name: "dotdot inside path", tar: tarOf(tarfix.File("a/../../escaped", "x"))},
		{name: "absolute path", ok: true, tar: func(out string) []byte { return tarOf(tarfix.File(out+"/abs", "x"))(out) },
			check: func(t *testing.T, root string) {
				matches, _ := filepath.Glob(filepath.Join(root, "tmp", "*", "*", "abs"))
				if len(matches) == 0 {
					t.Errorf("absolute entry did not land inside the layer")
				}
			}},
		{name: "symlink out then file under it", tar: func(out string) []byte {
			return tarOf(tarfix.Symlink("link", out), tarfix.File("link/escaped", "x"))(out)
		}},
		{name: "symlink out is kept as a link", ok: true, tar: func(out string) []byte { return tarOf(tarfix.Symlink("link", out))(out) },
			check: func(t *testing.T, root string) {
				if fi, err := os.Lstat(filepath.Join(root, "link")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
					t.Errorf("symlink not kept: %v", err)
				}
			}},
		{name: "hard link out", tar: func(out string) []byte { return tarOf(tarfix.Hardlink("hl", "../../.."+out+"/target"))(out) }},
		{name: "hard link to missing", tar: tarOf(tarfix.Hardlink("hl", "not/there"))},
		// c/storage's tar-split refuses duplicate paths before the driver
		// sees the layer (on overlay too); the driver alone keeps the last.
		{name: "duplicate entries", tar: tarOf(tarfix.File("f", "first"), tarfix.File("f", "second"))},
		{name: "device nodes are kept", ok: true, tar: tarOf(tarfix.Device("dev/sda", tar.TypeBlock, 8, 0), tarfix.Device("dev/mem", tar.TypeChar, 1, 1))},
		{name: "huge declared size, short data", tar: func(string) []byte {
			b := tarOf(tarfix.File("big", strings.Repeat("x", 4096)))("")
			copy(b[124:136], fmt.Sprintf("%011o\x00", int64(1)<<33)) // size field: 8 GiB
			tarfix.FixChecksum(b[:512])
			return b[:512+4096]
		}},
		{name: "truncated stream", tar: func(string) []byte {
			return tarOf(tarfix.File("a", strings.Repeat("y", 10000)))("")[:3000]
		}},
		{name: "bad header checksum", tar: func(string) []byte {
			b := tarOf(tarfix.File("a", "x"))("")
			b[148] ^= 1
			return b
		}},
		{name: "PAX bomb", tar: func(string) []byte {
			// archive/tar will not write a PAX header over 1 MiB: by hand.
			rec := " SCHILY.xattr.user.bomb=" + strings.Repeat("B", 2<<20) + "\n"
			rec = fmt.Sprint(len(rec)+7) + rec
			b := tarfix.RawHeader("PaxHeaders/a", 'x', len(rec))
			b = append(b, tarfix.Pad512(rec)...)
			return append(b, tarOf(tarfix.File("a", "x"))("")...)
		}},
		{name: "deep path", ok: true, tar: tarOf(tarfix.File(deep, "deep"))},
		{name: "name component too long", tar: tarOf(tarfix.File(strings.Repeat("n", 300), "x"))},
		{name: "whiteout of dotdot", tar: tarOf(tarfix.File("a/.wh...", ""))},
		{name: "whiteout of nothing", tar: tarOf(tarfix.File(".wh.", ""))},
		{name: "reserved overlay xattr", tar: tarOf(tarfix.WithXattrs(tarfix.File("f", "x"), "trusted.overlay.redirect", "/etc/shadow"))},
	}
}

// TestHostileLayers puts each hostile layer on a store that already holds
// a good image: invalid ones fail with an error and leave no layer, valid
// ones give the OCI result; nothing is ever written outside the store, and
// afterwards the store checks clean and the good image reads intact.
func TestHostileLayers(t *testing.T) {
	testutil.RequireRoot(t)
	store := openStore(t, "cfs")
	good := putLayers(t, store, "", layerTars(t)...)
	outside := t.TempDir()
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := store.Layers()
			layer, _, err := store.PutLayer("", "", nil, "", false, nil, bytes.NewReader(tc.tar(outside)))
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Fatalf("a hostile layer wrote outside the store: %v", entries)
			}
			if !tc.ok {
				after, _ := store.Layers()
				if err == nil || len(after) != len(before) {
					t.Fatalf("accepted (err %v), layers %d → %d", err, len(before), len(after))
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("valid layer refused: %v", err)
			}
			if tc.check != nil {
				_, root, unmount := mountNewContainer(t, store, layer.ID)
				tc.check(t, root)
				unmount()
			}
		})
	}
	checkStoreClean(t, store)
	_, root, unmount := mountNewContainer(t, store, good)
	defer unmount()
	if got, err := os.ReadFile(filepath.Join(root, "etc/passwd")); err != nil || !strings.HasPrefix(string(got), "root:x:0:0:root:/root:/bin/bash") {
		t.Fatalf("the good image after the hostile ones: %q, %v", got, err)
	}
}

func checkStoreClean(t *testing.T, store storage.Store) {
	t.Helper()
	gd, err := store.GraphDriver()
	if err != nil {
		t.Fatal(err)
	}
	ext, ok := driver.AsExtension(gd)
	if !ok {
		t.Fatal("not a cfs store")
	}
	if rep, err := ext.Objects().Fsck(context.Background(), dedupFsckOptions()); err != nil || !rep.Clean() {
		t.Fatalf("object fsck: %v %+v", err, rep)
	}
	if problems, err := ext.CheckImages(context.Background(), false); err != nil || len(problems) > 0 {
		t.Fatalf("image check: %v %+v", err, problems)
	}
}

package tests

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	storage "go.podman.io/storage"
	"go.podman.io/storage/pkg/archive"

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
			// Every layer the driver accepts exports again as it came.
			if got := diffBytes(t, store, layer.ID); !bytes.Equal(got, tc.tar(outside)) {
				t.Errorf("the layer's Diff (%d bytes) differs from the tar it was made from", len(got))
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
	if problems, err := ext.CheckImages(context.Background(), driver.CheckOnly); err != nil || len(problems) > 0 {
		t.Fatalf("image check: %v %+v", err, problems)
	}
}

// diffBytes returns the uncompressed Diff of layer.
func diffBytes(t *testing.T, store storage.Store, layer string) []byte {
	uncompressed := archive.Uncompressed
	t.Helper()
	rc, err := store.Diff("", layer, &storage.DiffOptions{Compression: &uncompressed})
	if err != nil {
		t.Fatalf("diff %s: %v", layer, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("diff %s: %v", layer, err)
	}
	return b
}

// TestSameLayerWhiteouts: whiteouts apply to lower layers only (OCI).
// A layer that whites out a directory and puts it again shows only its
// own entries there, as vfs does, and exports byte for byte; a layer
// that whites out what it added itself is refused, as overlay refuses it.
func TestSameLayerWhiteouts(t *testing.T) {
	testutil.RequireRoot(t)
	base := tarOf(tarfix.Dir("w/"), tarfix.File("w/old", "old"), tarfix.Dir("w2/"), tarfix.File("w2/x", "x"))("")
	recreate := tarOf(tarfix.Whiteout("", "w"), tarfix.Dir("w/"), tarfix.File("w/new", "new"))("")
	for _, drv := range []string{"cfs", "vfs"} {
		t.Run(drv, func(t *testing.T) {
			store := openStore(t, drv)
			lower := putLayers(t, store, "", base)
			top := putLayers(t, store, lower, recreate)
			_, root, unmount := mountNewContainer(t, store, top)
			entries, err := os.ReadDir(filepath.Join(root, "w"))
			unmount()
			if err != nil || len(entries) != 1 || entries[0].Name() != "new" {
				t.Fatalf("w after whiteout + re-created dir: %v %v, want [new] only", entries, err)
			}
			if got := diffBytes(t, store, top); !bytes.Equal(got, recreate) {
				t.Errorf("Diff of the layer differs from its tar")
			}
		})
	}
	store := openStore(t, "cfs")
	lower := putLayers(t, store, "", base)
	for name, tarball := range map[string][]byte{
		"file under a whited-out dir": tarOf(tarfix.File("w2/new", "n"), tarfix.Whiteout("", "w2"))(""),
		"hard link to a whited-out":   tarOf(tarfix.File("u", "some content to link"), tarfix.Hardlink("l", "u"), tarfix.Whiteout("", "u"))(""),
	} {
		t.Run(name, func(t *testing.T) {
			before, _ := store.Layers()
			_, _, err := store.PutLayer("", lower, nil, "", false, nil, bytes.NewReader(tarball))
			after, _ := store.Layers()
			if err == nil || !strings.Contains(err.Error(), "same layer") || len(after) != len(before) {
				t.Fatalf("PutLayer = %v (layers %d → %d), want a refusal naming the same-layer whiteout", err, len(before), len(after))
			}
		})
	}
	checkStoreClean(t, store)
}

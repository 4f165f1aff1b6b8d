package driver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	storage "go.podman.io/storage"
	"go.podman.io/storage/types"

	"github.com/cfs-storage/cfs-storage/tests/tarfix"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// pullRepoStore opens a c/storage store on cfs with partial pulls that
// look contents up in the driver's partial-pull repository, and the
// driver options given.
func pullRepoStore(t *testing.T, driverOpts ...string) (storage.Store, string) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	store, err := storage.GetStore(types.StoreOptions{
		RunRoot:            filepath.Join(dir, "run"),
		GraphRoot:          root,
		GraphDriverName:    Name,
		GraphDriverOptions: driverOpts,
		PullOptions:        map[string]string{"enable_partial_images": "true", "ostree_repos": PartialPullRepo(root)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Shutdown(true) })
	return store, filepath.Join(root, Name)
}

// payloadLink is the partial-pull repository's name for content.
func payloadLink(home, content string) string {
	h := sha256.Sum256([]byte(content))
	s := hex.EncodeToString(h[:])
	return filepath.Join(home, pullRepoDirName, "objects", s[:2], s[2:]+".payload-link")
}

// TestPartialPullFindsStoreAndHost: with ostree_repos listing
// PartialPullRepo, a partial pull takes a content the store has from a
// full pull and one the host repository has without fetching either,
// the layer reads right, and the host repository is untouched.
func TestPartialPullFindsStoreAndHost(t *testing.T) {
	testutil.RequireRoot(t)
	hostContent, storeContent, own := randomText(256<<10), randomText(256<<10), randomText(64<<10)
	repo := testutil.OstreeRepo(t, "bare", map[string]string{"usr/lib/libhost.so": hostContent})
	before := testutil.OstreeObjectState(t, repo)
	store, home := pullRepoStore(t, "cfs.host_repo="+repo)
	if _, _, err := store.PutLayer(randomID(), "", nil, "", false, nil, bytes.NewReader(mustTar(t, tarfix.File("opt/full", storeContent)))); err != nil {
		t.Fatalf("full pull: %v", err)
	}

	tarball := mustTar(t, tarfix.Dir("srv/"), tarfix.File("srv/from-store", storeContent),
		tarfix.File("srv/from-host", hostContent), tarfix.File("srv/own", own))
	layer, f, err := partialPull(t, store, "", tarball, nil)
	if err != nil {
		t.Fatalf("partial pull: %v", err)
	}
	cold, _ := partialStore(t)
	_, fCold, err := partialPull(t, cold, "", tarball, nil)
	must(t, err)
	t.Logf("fetched %d bytes; into an empty store without the repository %d", f.fetched.Load(), fCold.fetched.Load())
	// The two shared contents are about 5/6 of the compressed layer.
	if 3*f.fetched.Load() > fCold.fetched.Load() {
		t.Errorf("fetched %d bytes, %d into an empty store: the store's and the host's contents were fetched", f.fetched.Load(), fCold.fetched.Load())
	}
	for _, c := range []string{storeContent, hostContent} {
		if _, err := os.Stat(payloadLink(home, c)); err != nil {
			t.Errorf("no valid payload link for a content of the store or host: %v", err)
		}
	}
	mnt, err := store.Mount(layer.ID, "")
	must(t, err)
	expectFile(t, filepath.Join(mnt, "srv/from-store"), storeContent)
	expectFile(t, filepath.Join(mnt, "srv/from-host"), hostContent)
	expectFile(t, filepath.Join(mnt, "srv/own"), own)
	_, err = store.Unmount(layer.ID, true)
	must(t, err)

	after := testutil.OstreeObjectState(t, repo)
	for p, s := range before {
		if after[p] != s {
			t.Errorf("host object %s changed: %s, was %s", p, after[p], s)
		}
	}
	testutil.OstreeFsck(t, repo)
}

// TestPartialPullLyingPayloadLink: a payload link that names other bytes
// than its SHA-256 (the repository tampered with) makes the pull fail on
// the DiffID check, with nothing stored.
func TestPartialPullLyingPayloadLink(t *testing.T) {
	testutil.RequireRoot(t)
	content := randomText(128 << 10)
	store, home := pullRepoStore(t)
	liar := filepath.Join(t.TempDir(), "liar")
	must(t, os.WriteFile(liar, []byte(randomText(128<<10)), 0o644))
	link := payloadLink(home, content)
	must(t, os.MkdirAll(filepath.Dir(link), 0o755))
	must(t, os.Symlink(liar, link))

	_, _, err := partialPull(t, store, "", mustTar(t, tarfix.File("a", content)), nil)
	if err == nil {
		t.Fatal("a pull through a lying payload link succeeded")
	}
	t.Logf("error: %v", err)
	if ls, _ := store.Layers(); len(ls) != 0 {
		t.Errorf("layers stored: %d", len(ls))
	}
	if names, _ := readDirNames(filepath.Join(home, "tmp")); len(names) != 0 {
		t.Errorf("left in tmp: %q", names)
	}
}

// TestPullRepoRefreshAndPrune: refresh links each listed content once
// (the first source wins), keeps a valid link, replaces a dangling one,
// and prune removes the links whose content is gone and crash leftovers.
func TestPullRepoRefreshAndPrune(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, []byte(content), 0o644))
		return p
	}
	a, b, a2 := file("a", "content a"), file("b", "content b"), file("a2", "content a")
	source := func(files ...string) pullSource {
		return func(_ context.Context, add func([32]byte, string) error) error {
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					return err
				}
				if err := add(sha256.Sum256(data), f); err != nil {
					return err
				}
			}
			return nil
		}
	}
	home := filepath.Join(dir, "home")
	r := newPullRepo(home)
	must(t, r.refresh(ctx, source(a, b), source(a2)))
	target := func(content string) string {
		p, err := os.Readlink(payloadLink(home, content))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if target("content a") != a || target("content b") != b {
		t.Fatalf("links name %s and %s", target("content a"), target("content b"))
	}
	// A new process: the valid link is kept, the dangling one replaced.
	must(t, os.Remove(a))
	r = newPullRepo(home)
	must(t, r.refresh(ctx, source(b, a2)))
	if target("content a") != a2 {
		t.Errorf("dangling link not replaced: %s", target("content a"))
	}
	leftover := payloadLink(home, "content b") + ".tmp-1"
	must(t, os.Symlink(b, leftover))
	must(t, os.Remove(b))
	n, err := r.prune()
	must(t, err)
	if n != 2 {
		t.Errorf("pruned %d, want 2 (a dangling link, a leftover)", n)
	}
	if _, err := os.Lstat(payloadLink(home, "content b")); err == nil {
		t.Error("the dangling link is still there")
	}
	if _, err := os.Stat(payloadLink(home, "content a")); err != nil {
		t.Errorf("a valid link was pruned: %v", err)
	}
}

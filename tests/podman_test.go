package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// TestPodman runs real podman commands (bin/podman, podman with the cfs
// driver linked in, see scripts/build-podman.sh) on cfs and, side by
// side, on c/storage's overlay driver: every check is a subtest
// TestPodman/<check>/<driver>, overlay first, and where the two drivers
// must agree (layer digests, trees, archives) the cfs subtest compares
// its result with overlay's. Each store has its own graphroot, runroot
// and configuration; podman runs with runc in a private mount namespace
// with a cgroup2 hierarchy (see podmanNS).
func TestPodman(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tool := range []string{"nsenter", "unshare", "runc", "conmon"} {
		testutil.RequireTool(t, tool)
	}
	bin := podmanBinary(t)
	imgs := writePodmanImages(t)
	ns := startPodmanNS(t)
	start := time.Now()
	defer func() { t.Logf("podman suite: %s", time.Since(start).Round(time.Second)) }()

	// The shared stores, one per driver, which most checks use.
	stores := map[string]*podmanStore{}
	for _, d := range podmanDrivers {
		stores[d] = newPodmanStore(t, bin, ns, d, storeConfig{})
	}
	// results of the overlay subtest, for the cfs one to compare with.
	ref := map[string]any{}
	check := func(name string, fn func(t *testing.T, s *podmanStore)) {
		t.Run(name, func(t *testing.T) {
			for _, d := range podmanDrivers {
				t.Run(d, func(t *testing.T) { fn(t, stores[d]) })
			}
		})
	}
	// compare records v as overlay's result under key, or on cfs checks
	// it against overlay's.
	compare := func(t *testing.T, s *podmanStore, key string, v []string) {
		t.Helper()
		if s.driver == "overlay" {
			ref[key] = v
			return
		}
		want, ok := ref[key].([]string)
		if !ok {
			t.Errorf("%s: no overlay result to compare with (the overlay subtest failed)", key)
			return
		}
		if !slices.Equal(want, v) {
			t.Errorf("%s differs between overlay and cfs (- overlay, + cfs):\n%s", key, pmDiffLines(want, v))
		}
	}

	check("pull", func(t *testing.T, s *podmanStore) {
		if err := pullTestImages(s, imgs); err != nil {
			t.Fatal(err)
		}
		ids := strings.Fields(s.ok(t, "images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", pmBase))
		ids = append(ids, strings.Fields(s.ok(t, "images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", pmData))...)
		compare(t, s, "image IDs", ids)
	})

	check("run", func(t *testing.T, s *podmanStore) {
		out := s.ok(t, "run", "--rm", pmBase, "sh", "-c", "cat /etc/motd /usr/share/pm/readme; extra-tool; id")
		for _, want := range []string{"motd of the base image", "added without directory entries", "extra", "uid=0(root) gid=0(root)"} {
			if !strings.Contains(out, want) {
				t.Errorf("run output lacks %q:\n%s", want, out)
			}
		}
		if _, stderr, code := s.exec(t.Context(), nil, "run", "--rm", pmBase, "sh", "-c", "exit 7"); code != 7 {
			t.Errorf("run ... exit 7: exit code %d, want 7\n%s", code, stderr)
		}
		if out := s.ok(t, "ps", "-a", "-q"); strings.TrimSpace(out) != "" {
			t.Errorf("run --rm left containers: %s", out)
		}
	})

	// A --rm container is volatile (its overlay skips syncs); mounting
	// it a second time must work as for any container.
	check("volatile-remount", func(t *testing.T, s *podmanStore) {
		id := lastLine(s.ok(t, "create", "--rm", pmBase, "sh", "-c", "echo volatile-ok; cat /etc/motd"))
		mnt := lastLine(s.ok(t, "mount", id))
		if _, err := os.Stat(s.ns.path(filepath.Join(mnt, "bin/busybox"))); err != nil {
			t.Errorf("mounted volatile container: %v", err)
		}
		s.ok(t, "umount", id)
		out, err := s.try("start", "-a", id)
		if err != nil {
			s.exec(t.Context(), nil, "rm", "-f", id)
			t.Fatalf("second mount of a volatile container (podman start after mount/umount): %v", err)
		}
		if !strings.Contains(out, "volatile-ok") || !strings.Contains(out, "motd of the base image") {
			t.Errorf("start -a output: %q", out)
		}
		// And a second run of a plain volatile --rm container.
		if out := s.ok(t, "run", "--rm", pmBase, "echo", "again"); strings.TrimSpace(out) != "again" {
			t.Errorf("run --rm: %q", out)
		}
	})

	check("read-only", func(t *testing.T, s *podmanStore) {
		_, stderr, code := s.exec(t.Context(), nil, "run", "--rm", "--read-only", pmBase, "touch", "/newfile")
		if code == 0 || !strings.Contains(stderr, "Read-only file system") {
			t.Errorf("touch /newfile in a --read-only container: exit %d, want a failure with EROFS\n%s", code, stderr)
		}
		if out := s.ok(t, "run", "--rm", "--read-only", pmBase, "sh", "-c", "touch /tmp/x && cat /etc/motd"); !strings.Contains(out, "motd of the base image") {
			t.Errorf("--read-only run: %q", out)
		}
	})

	check("mount-type-image", func(t *testing.T, s *podmanStore) {
		out := s.ok(t, "run", "--rm", "--mount", "type=image,source="+pmData+",destination=/img", pmBase,
			"sh", "-c", "cat /img/payload/hello.txt; touch /img/x 2>&1 || true")
		if !strings.Contains(out, "hello from the data image") {
			t.Errorf("--mount type=image: %q", out)
		}
		if !strings.Contains(out, "Read-only file system") {
			t.Errorf("an image mount (rw=false) must be read-only: %q", out)
		}
	})

	check("image-mount", func(t *testing.T, s *podmanStore) {
		mnt := lastLine(s.ok(t, "image", "mount", pmBase))
		defer s.exec(t.Context(), nil, "image", "umount", pmBase)
		if !strings.Contains(s.ok(t, "image", "mount"), mnt) {
			t.Errorf("image mount (list) does not show %s", mnt)
		}
		tree, err := testutil.ListTree(s.ns.path(mnt))
		if err != nil {
			t.Fatal(err)
		}
		compare(t, s, "image mount tree", pmNormalizeTree(tree[1:]))
		s.ok(t, "image", "umount", pmBase)
		if strings.Contains(s.ns.mountinfo(t), mnt) {
			t.Errorf("%s still mounted after image umount", mnt)
		}
	})

	// Directories that a layer only implies (it adds files under them
	// but has no entry of its own) have a real mtime, never 0.
	check("dir-mtime", func(t *testing.T, s *podmanStore) {
		out := s.ok(t, "run", "--rm", pmBase, "stat", "-c", "%Y %n", "/etc", "/bin", "/usr/share/pm", "/usr/share")
		pmCheckMtimes(t, "run "+pmBase, out, map[string]int64{"/etc": pmEpoch})
		mnt := lastLine(s.ok(t, "image", "mount", pmBase))
		defer s.exec(t.Context(), nil, "image", "umount", pmBase)
		for _, d := range []string{"bin", "usr/share/pm", "usr", "etc"} {
			fi, err := os.Stat(s.ns.path(filepath.Join(mnt, d)))
			if err != nil {
				t.Fatal(err)
			}
			if fi.ModTime().Unix() < 1e9 {
				t.Errorf("podman image mount: /%s has mtime %s (%d), want the real one", d, fi.ModTime().UTC(), fi.ModTime().Unix())
			}
		}
	})

	// Commit a change whose every mtime is fixed: the committed layer
	// must have the same digest on both drivers (and the base layers
	// the pulled ones').
	check("commit-digest", func(t *testing.T, s *podmanStore) {
		name := "commit-src"
		s.ok(t, "run", "--name", name, pmBase, "sh", "-c",
			"mkdir /data && echo committed > /data/file && touch -t 202311142213.20 /data/file /data")
		defer s.exec(t.Context(), nil, "rm", "-f", name)
		s.ok(t, "commit", "-q", name, "localhost/pmtest/committed:v1")
		out := s.ok(t, "run", "--rm", "localhost/pmtest/committed:v1", "sh", "-c", "cat /data/file; stat -c '%Y %n' /data /data/file /etc /bin")
		if !strings.Contains(out, "committed") {
			t.Errorf("committed image lacks /data/file: %q", out)
		}
		pmCheckMtimes(t, "run the committed image", strings.Join(strings.Split(out, "\n")[1:], "\n"),
			map[string]int64{"/data": pmEpoch, "/data/file": pmEpoch, "/etc": pmEpoch})
		var layers []string
		if err := json.Unmarshal([]byte(s.ok(t, "image", "inspect", "--format", "{{json .RootFS.Layers}}", "localhost/pmtest/committed:v1")), &layers); err != nil {
			t.Fatal(err)
		}
		want := []string{imgs.base.DiffIDs[0].String(), imgs.base.DiffIDs[1].String()}
		if len(layers) != 3 || !slices.Equal(layers[:2], want) {
			t.Errorf("committed image layers %v, want the base's %v and one more", layers, want)
		}
		// The committed layer's tar, as podman saves it.
		archive := filepath.Join(t.TempDir(), "committed.tar")
		s.ok(t, "save", "--format", "docker-archive", "-o", archive, "localhost/pmtest/committed:v1")
		tars, err := pmArchiveLayers(archive)
		if err != nil {
			t.Fatal(err)
		}
		listing, err := pmTarListing(tars[len(tars)-1], true)
		if err != nil {
			t.Fatal(err)
		}
		compare(t, s, "committed layer entries", listing)
		compare(t, s, "committed image layer digests", layers)
	})

	// Commit with a deletion and a changed directory, run the committed
	// image, and commit again on top.
	check("commit-roundtrip", func(t *testing.T, s *podmanStore) {
		s.ok(t, "run", "--name", "commit-del", pmBase, "sh", "-c", "rm /etc/motd && echo new > /etc/new.conf && mkdir -p /srv/a/b && echo deep > /srv/a/b/c")
		defer s.exec(t.Context(), nil, "rm", "-f", "commit-del", "commit-again")
		s.ok(t, "commit", "-q", "commit-del", "localhost/pmtest/commit-del:v1")
		out := s.ok(t, "run", "--rm", "localhost/pmtest/commit-del:v1", "sh", "-c",
			"ls /etc; cat /etc/new.conf /srv/a/b/c; test -e /etc/motd && echo motd-still-there; stat -c '%Y %n' /etc /srv /srv/a /srv/a/b")
		for _, want := range []string{"new.conf", "new", "deep"} {
			if !strings.Contains(out, want) {
				t.Errorf("committed image: output lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "motd-still-there") {
			t.Errorf("committed image still has the deleted /etc/motd:\n%s", out)
		}
		var stats []string
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) == 2 && strings.HasPrefix(f[1], "/") {
				stats = append(stats, l)
			}
		}
		pmCheckMtimes(t, "run the committed image", strings.Join(stats, "\n"), nil)
		// A second commit on top of the first.
		s.ok(t, "run", "--name", "commit-again", "localhost/pmtest/commit-del:v1", "sh", "-c", "rm -r /srv/a/b && echo 2 > /etc/second")
		s.ok(t, "commit", "-q", "commit-again", "localhost/pmtest/commit-again:v1")
		out = s.ok(t, "run", "--rm", "localhost/pmtest/commit-again:v1", "sh", "-c", "cat /etc/second; ls /srv/a /etc")
		if lines := strings.Split(out, "\n"); len(lines) < 3 || lines[0] != "2" || slices.Contains(lines, "b") || !slices.Contains(lines, "new.conf") {
			t.Errorf("second commit: %q", out)
		}
		archive := filepath.Join(t.TempDir(), "again.tar")
		s.ok(t, "save", "--format", "docker-archive", "-o", archive, "localhost/pmtest/commit-again:v1")
		tars, err := pmArchiveLayers(archive)
		if err != nil {
			t.Fatal(err)
		}
		var all []string
		for i, tb := range tars {
			l, err := pmTarListing(tb, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range l {
				all = append(all, fmt.Sprintf("layer %d: %s", i, e))
			}
			// Directory entries of committed layers carry real mtimes.
			if i >= 2 {
				withTimes, _ := pmTarListing(tb, true)
				for _, e := range withTimes {
					if strings.Contains(e, " type=5 ") && strings.HasSuffix(e, " mtime=0") {
						t.Errorf("committed layer %d: directory entry with mtime 0: %s", i, e)
					}
				}
			}
		}
		compare(t, s, "commit round trip layers (without mtimes)", all)
	})

	check("build-cache", func(t *testing.T, s *podmanStore) {
		ctx := t.TempDir()
		pmWriteFiles(t, ctx, map[string]string{
			"Containerfile": "FROM " + pmBase + "\nRUN echo built > /built && mkdir -p /bdir && echo x > /bdir/f\nCOPY hello.txt /copied/hello.txt\nCMD [\"/bin/cat\", \"/built\", \"/copied/hello.txt\"]\n",
			"hello.txt":     "copied from the context\n",
		})
		first := s.ok(t, "build", "--pull=never", "--network=none", "-t", "localhost/pmtest/built:v1", ctx)
		id1 := lastLine(first)
		second := s.ok(t, "build", "--pull=never", "--network=none", "-t", "localhost/pmtest/built:v1", ctx)
		if !strings.Contains(second, "Using cache") {
			t.Errorf("second build did not use the cache:\n%s", second)
		}
		if id2 := lastLine(second); id2 != id1 {
			t.Errorf("second build: image %s, first %s", id2, id1)
		}
		out := s.ok(t, "run", "--rm", "localhost/pmtest/built:v1")
		if out != "built\ncopied from the context\n" {
			t.Errorf("run the built image: %q", out)
		}
	})

	check("build-multistage", func(t *testing.T, s *podmanStore) {
		ctx := t.TempDir()
		pmWriteFiles(t, ctx, map[string]string{
			"Containerfile": "FROM " + pmBase + " AS builder\nRUN mkdir /out && echo from-builder > /out/artifact\n" +
				"FROM " + pmBase + "\nCOPY --from=builder /out/artifact /artifact\nRUN cat /artifact > /artifact.copy && rm /etc/motd\n",
		})
		s.ok(t, "build", "--pull=never", "--network=none", "-t", "localhost/pmtest/multi:v1", ctx)
		out := s.ok(t, "run", "--rm", "localhost/pmtest/multi:v1", "sh", "-c", "cat /artifact.copy; ls /etc; ls /out 2>&1 || true")
		if !strings.Contains(out, "from-builder") || strings.Contains(out, "motd") || strings.Contains(out, "artifact\n") {
			t.Errorf("multi-stage image: %q", out)
		}
	})

	// save gives back the pulled layer tars byte for byte; load of the
	// archive gives the same image, and saving it again the same tars.
	check("save-load", func(t *testing.T, s *podmanStore) {
		dir := t.TempDir()
		for _, c := range []struct {
			image string
			want  []string
		}{
			{pmBase, []string{imgs.base.DiffIDs[0].String(), imgs.base.DiffIDs[1].String()}},
			{pmData, []string{imgs.data.DiffIDs[0].String()}},
		} {
			archive := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(c.image)+".tar")
			s.ok(t, "save", "--format", "docker-archive", "-o", archive, c.image)
			tars, err := pmArchiveLayers(archive)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tb := range tars {
				got = append(got, pmSha256Digest(tb))
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("save %s: layer tars %v, want the pulled ones %v", c.image, got, c.want)
			}
		}
		archive := filepath.Join(dir, "data.tar")
		s.ok(t, "save", "--format", "docker-archive", "-o", archive, pmData)
		id := strings.TrimSpace(s.ok(t, "image", "inspect", "--format", "{{.Id}}", pmData))
		s.ok(t, "rmi", pmData)
		s.ok(t, "load", "-q", "-i", archive)
		if got := strings.TrimSpace(s.ok(t, "image", "inspect", "--format", "{{.Id}}", pmData)); got != id {
			t.Errorf("loaded image ID %s, want %s", got, id)
		}
		again := filepath.Join(dir, "data-again.tar")
		s.ok(t, "save", "--format", "docker-archive", "-o", again, pmData)
		a, err1 := pmArchiveLayers(archive)
		b, err2 := pmArchiveLayers(again)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if len(a) != len(b) || pmSha256Digest(a[0]) != pmSha256Digest(b[0]) {
			t.Errorf("save after load: layer tars differ from the saved ones")
		}
	})

	check("system-df", func(t *testing.T, s *podmanStore) {
		out := s.ok(t, "system", "df", "--format", "json")
		var rows []struct {
			Type    string
			Total   int
			RawSize int64
		}
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("system df --format json: %v\n%s", err, out)
		}
		var summary []string
		for _, r := range rows {
			summary = append(summary, fmt.Sprintf("%s total=%d", r.Type, r.Total))
			if r.Type == "Images" && (r.Total == 0 || r.RawSize <= 0) {
				t.Errorf("system df: images %+v", r)
			}
		}
		compare(t, s, "system df counts", summary)
		if _, err := s.try("system", "df", "-v"); err != nil {
			t.Error(err)
		}
	})

	// Every remaining check makes stores of its own.
	eachDriver := func(name string, fn func(t *testing.T, driver string)) {
		t.Run(name, func(t *testing.T) {
			for _, d := range podmanDrivers {
				t.Run(d, func(t *testing.T) { fn(t, d) })
			}
		})
	}
	// pullRun pulls the test images into s and runs a container.
	pullRun := func(t *testing.T, s *podmanStore, runArgs ...string) string {
		t.Helper()
		if err := pullTestImages(s, imgs); err != nil {
			t.Fatal(err)
		}
		out, err := s.try(append(append([]string{"run", "--rm"}, runArgs...), pmBase, "sh", "-c", "cat /etc/motd; grep ' / / ' /proc/self/mountinfo")...)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "motd of the base image") {
			t.Errorf("run: %q", out)
		}
		return out
	}

	eachDriver("system-reset", func(t *testing.T, driver string) {
		s := newPodmanStore(t, bin, ns, driver, storeConfig{})
		pullRun(t, s)
		s.ok(t, "create", "--name", "left", pmBase)
		s.ok(t, "image", "mount", pmData)
		s.ok(t, "system", "reset", "--force")
		if out := s.ok(t, "images", "-q"); strings.TrimSpace(out) != "" {
			t.Errorf("images after system reset: %s", out)
		}
		if out := s.ok(t, "ps", "-aq"); strings.TrimSpace(out) != "" {
			t.Errorf("containers after system reset: %s", out)
		}
		for _, l := range strings.Split(s.ns.mountinfo(t), "\n") {
			if strings.Contains(l, s.graph) || strings.Contains(l, s.run) {
				t.Errorf("mount left after system reset: %s", l)
			}
		}
		// Lock files, the database and the driver's top-level marks may
		// stay (they do on overlay); nothing of a layer, image or mount.
		var left []string
		filepath.Walk(s.graph, func(p string, fi os.FileInfo, err error) error {
			rel := strings.TrimPrefix(p, s.graph+"/")
			if err == nil && !fi.IsDir() && strings.Count(rel, "/") > 1 {
				left = append(left, rel)
			}
			return nil
		})
		if len(left) > 0 {
			t.Errorf("layer or image files left in the graphroot after system reset: %v", left)
		}
		pullRun(t, s)
	})

	// Fedora's /etc/containers/storage.conf (containers-common), its
	// settings as shipped, with driver = "cfs" (and private graphroot
	// and runroot).
	const fedoraStorageConf = `# This file is the configuration file for all tools
# that use the containers/storage library.
# See man 5 containers-storage.conf for more information
[storage]
# Default Storage Driver, Must be set for proper operation.
driver = "%[1]s"
# Temporary storage location
runroot = "%[3]s"
# Primary Read/Write location of container storage
graphroot = "%[2]s"

[storage.options]
# Storage options to be passed to underlying storage drivers
# AdditionalImageStores is used to pass paths to additional Read/Only image stores
# Must be comma separated list.
additionalimagestores = [
]

# Allows specification of how storage is populated when pulling images. This
# option can speed the pulling process of images compressed with format
# zstd:chunked.
pull_options = {enable_partial_images = "true", use_hard_links = "false", ostree_repos=""}

[storage.options.overlay]
# mountopt specifies comma separated list of extra mount options
mountopt = "nodev,metacopy=on"

[storage.options.thinpool]
`
	// A store seeded with the images serves another as a read-only
	// image store (additionalimagestores): the images list and run there,
	// a container's commit stays in the writable store, and the seed is
	// not written.
	eachDriver("additional-image-store", func(t *testing.T, driver string) {
		seed := newPodmanStore(t, bin, ns, driver, storeConfig{})
		pullRun(t, seed)
		// The --rm container's cleanup (podman run by conmon) may still
		// be closing the seed store: wait until it stops changing.
		before := pmStoreState(t, seed.graph)
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
			time.Sleep(500 * time.Millisecond)
			now := pmStoreState(t, seed.graph)
			if now == before {
				break
			}
			before = now
		}
		s := newPodmanStore(t, bin, ns, driver, storeConfig{extra: fmt.Sprintf("[storage.options]\nadditionalimagestores = [%q]\n", seed.graph)})
		if out := s.ok(t, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ReadOnly}}"); !strings.Contains(out, pmBase+" true") {
			t.Errorf("images of the read-only store: %q", out)
		}
		pullRun(t, s) // the images are found there: nothing to pull
		s.ok(t, "run", "--name", "c1", pmBase, "sh", "-c", "echo changed > /etc/motd")
		s.ok(t, "commit", "-q", "c1", "localhost/committed")
		if out := s.ok(t, "run", "--rm", "localhost/committed", "cat", "/etc/motd"); strings.TrimSpace(out) != "changed" {
			t.Errorf("committed image: %q", out)
		}
		s.ok(t, "rm", "c1")
		if after := pmStoreState(t, seed.graph); after != before {
			t.Errorf("the read-only store changed (- before, + after):\n%s", pmDiffLines(strings.Split(before, "\n"), strings.Split(after, "\n")))
		}
	})

	eachDriver("fedora-storage-conf", func(t *testing.T, driver string) {
		s := newPodmanStore(t, bin, ns, driver, storeConfig{storageConf: fedoraStorageConf})
		pullRun(t, s)
		if got := strings.TrimSpace(s.ok(t, "info", "--format", "{{.Store.GraphDriverName}}")); got != driver {
			t.Errorf("podman info: driver %q, want %q", got, driver)
		}
	})

	// Partial pulls (zstd:chunked from a registry, enabled as Fedora's
	// storage.conf enables them): the base image squashed into one new
	// layer is pulled into a store that holds the base image from a
	// whole pull (the OCI layout). On cfs, with the driver's partial-pull
	// repository in ostree_repos, the base image's contents are not
	// fetched again; overlay's differ only knows layers pulled
	// partially, so it fetches them. Either way the image runs.
	proxy := startBlobProxy(t, startRegistry(t))
	eachDriver("partial-pull", func(t *testing.T, driver string) {
		repos := ""
		if driver == "cfs" {
			repos = "%[2]s/cfs/partial-pull-repo"
		}
		conf := storeConfig{storageConf: "[storage]\ndriver = \"%[1]s\"\ngraphroot = \"%[2]s\"\nrunroot = \"%[3]s\"\n" +
			"[storage.options]\npull_options = {enable_partial_images = \"true\", ostree_repos = \"" + repos + "\"}\n"}
		src := newPodmanStore(t, bin, ns, driver, conf)
		pullRun(t, src)
		src.ok(t, "run", "--name", "sq", pmBase, "sh", "-c", "echo squashed > /etc/motd")
		src.ok(t, "commit", "-q", "--squash", "sq", "localhost/squashed")
		src.ok(t, "rm", "sq")
		ref := "docker://" + proxy.addr + "/pm/" + driver + ":squashed"
		src.ok(t, "push", "-q", "--tls-verify=false", "--compression-format", "zstd:chunked", "--force-compression", "localhost/squashed", ref)
		fetch := func(s *podmanStore) int64 {
			before, ranged := proxy.bytes.Load(), proxy.ranged.Load()
			s.ok(t, "pull", "-q", "--tls-verify=false", ref)
			if proxy.ranged.Load() == ranged {
				t.Errorf("podman pull %s made no ranged request: not a partial pull", ref)
			}
			return proxy.bytes.Load() - before
		}
		holder := newPodmanStore(t, bin, ns, driver, conf)
		pullRun(t, holder)
		warm := fetch(holder)
		cold := fetch(newPodmanStore(t, bin, ns, driver, conf))
		t.Logf("%s: the squashed image fetched %d bytes into a store holding the base image, %d into an empty one", driver, warm, cold)
		if driver == "cfs" && warm*4 > cold {
			t.Errorf("cfs fetched %d bytes into a store holding the base image's contents (%d into an empty store)", warm, cold)
		}
		if out := holder.ok(t, "run", "--rm", strings.TrimPrefix(ref, "docker://"), "cat", "/etc/motd"); strings.TrimSpace(out) != "squashed" {
			t.Errorf("run the partially pulled image: %q", out)
		}
	})

	// Driver options without the driver's prefix, on the command line:
	// what the README recommends (cfs.host_link=... also reaches podman's
	// cleanup process, which refuses it for --privileged containers).
	eachDriver("storage-opt-unprefixed", func(t *testing.T, driver string) {
		opts := map[string][]string{
			"cfs":     {"--storage-opt", "host_link=copy", "--storage-opt", "inline_threshold=64"},
			"overlay": {"--storage-opt", "mountopt=nodev", "--storage-opt", "sync=none"},
		}[driver]
		s := newPodmanStore(t, bin, ns, driver, storeConfig{global: opts})
		pullRun(t, s)
		if out := s.ok(t, "run", "--rm", "--privileged", pmBase, "cat", "/etc/motd"); !strings.Contains(out, "motd") {
			t.Errorf("run --privileged: %q", out)
		}
	})

	eachDriver("storage-conf-driver-table", func(t *testing.T, driver string) {
		table := map[string]string{
			"cfs":     "\n[storage.options.cfs]\nhost_link = \"copy\"\ninline_threshold = 64\nverity = \"none\"\n",
			"overlay": "\n[storage.options.overlay]\nsync = \"none\"\n",
		}[driver]
		s := newPodmanStore(t, bin, ns, driver, storeConfig{extra: table})
		pullRun(t, s)
		if out := s.ok(t, "run", "--rm", "--privileged", pmBase, "cat", "/etc/motd"); !strings.Contains(out, "motd") {
			t.Errorf("run --privileged: %q", out)
		}
	})

	// mountopt nodev,nosuid, in the driver's table and as --storage-opt:
	// the container's root is mounted with both flags.
	for _, via := range []string{"storage-conf", "storage-opt"} {
		eachDriver("mountopt-nodev-nosuid-"+via, func(t *testing.T, driver string) {
			cfg := storeConfig{}
			if via == "storage-conf" {
				cfg.extra = fmt.Sprintf("\n[storage.options.%s]\nmountopt = \"nodev,nosuid\"\n", driver)
			} else {
				cfg.global = []string{"--storage-opt", "mountopt=nodev,nosuid"}
			}
			s := newPodmanStore(t, bin, ns, driver, cfg)
			out := pullRun(t, s)
			line := lastLine(out)
			fields := strings.Fields(line)
			if len(fields) < 6 {
				t.Fatalf("no root mount in the container's mountinfo:\n%s", out)
			}
			for _, flag := range []string{"nodev", "nosuid"} {
				if !slices.Contains(strings.Split(fields[5], ","), flag) {
					t.Errorf("container root mounted without %s: %s", flag, line)
				}
			}
		})
	}

	check("uidmap", func(t *testing.T, s *podmanStore) {
		for _, base := range []string{"100000", "200000"} {
			out := s.ok(t, "run", "--rm", "--uidmap", "0:"+base+":65536", "--gidmap", "0:"+base+":65536", pmBase,
				"sh", "-c", "cat /proc/self/uid_map; stat -c '%u:%g %n' /bin/busybox /etc/passwd /usr/share/pm/readme; cat /etc/motd")
			if f := strings.Fields(out); len(f) < 3 || f[0] != "0" || f[1] != base || f[2] != "65536" {
				t.Errorf("--uidmap 0:%s:65536: uid_map %q", base, out)
			}
			for _, want := range []string{"0:0 /bin/busybox", "0:0 /etc/passwd", "0:0 /usr/share/pm/readme", "motd of the base image"} {
				if !strings.Contains(out, want) {
					t.Errorf("--uidmap 0:%s:65536: output lacks %q:\n%s", base, want, out)
				}
			}
		}
		if !s.ns.autoUserns {
			t.Logf("no /etc/subuid or /etc/subgid to bind over: --userns=auto not tried")
			return
		}
		out := s.ok(t, "run", "--rm", "--userns=auto:size=65536", pmBase,
			"sh", "-c", "cat /proc/self/uid_map; stat -c '%u:%g %n' /bin/busybox; cat /etc/motd")
		if f := strings.Fields(out); len(f) < 3 || f[0] != "0" || f[1] == "0" || f[2] != "65536" {
			t.Errorf("--userns=auto:size=65536: uid_map %q", out)
		}
		if !strings.Contains(out, "0:0 /bin/busybox") || !strings.Contains(out, "motd of the base image") {
			t.Errorf("--userns=auto:size=65536: %q", out)
		}
	})
}

// checkMtimes parses "MTIME PATH" lines (stat -c '%Y %n'): every mtime
// must be a real one (not 0, 1970), and those in want exactly that.
func pmCheckMtimes(t *testing.T, what, out string, want map[string]int64) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			t.Errorf("%s: stat output line %q", what, l)
			continue
		}
		sec, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			t.Errorf("%s: stat output line %q", what, l)
			continue
		}
		if w, ok := want[f[1]]; ok && sec != w {
			t.Errorf("%s: %s has mtime %d (%s), want %d (%s)", what, f[1], sec, time.Unix(sec, 0).UTC(), w, time.Unix(w, 0).UTC())
		} else if sec < 1e9 {
			t.Errorf("%s: %s has mtime %d (%s), want its real mtime", what, f[1], sec, time.Unix(sec, 0).UTC())
		}
	}
}

// normalizeTree drops what legitimately differs between two drivers'
// trees from ListTree lines: link counts, and the mtimes of directories
// (a directory a layer only implies gets its extraction time on overlay);
// checkMtimes and the dir-mtime check look at those.
func pmNormalizeTree(lines []string) []string {
	var out []string
	for _, l := range lines {
		f := strings.Fields(l)
		var keep []string
		isDir := len(f) > 1 && strings.HasPrefix(f[1], "mode=4")
		for _, w := range f {
			if strings.HasPrefix(w, "nlink=") || (isDir && strings.HasPrefix(w, "mtime=")) {
				continue
			}
			keep = append(keep, w)
		}
		out = append(out, strings.Join(keep, " "))
	}
	return out
}

func pmWriteFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

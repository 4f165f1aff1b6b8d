package erofs

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/layers/tree"
	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// externalContent maps the payload of each external file of mountTree to
// its content (the object written to the data-only lower).
type externalContent map[string][]byte

// mountTree is the source tree of the kernel tests: every file type,
// inline and external files, hard links, xattrs (including a user
// trusted.overlay.* key that must be escaped), owners and mtimes that need
// extended inodes, a long symlink and a multi-block directory.
func mountTree(t testing.TB) (*tree.Tree, externalContent) {
	t.Helper()
	tr := tree.New()
	tr.Root.Mtime = tree.Time{Sec: 1600000000}
	objects := externalContent{}
	add := func(p string, n *tree.Node) {
		t.Helper()
		if n.Nlink == 0 {
			n.Nlink = 1
		}
		if n.Mtime == (tree.Time{}) {
			n.Mtime = tr.Root.Mtime
		}
		if err := tr.Insert(p, n); err != nil {
			t.Fatal(err)
		}
	}
	ext := func(p string, content []byte, mode uint32) {
		d := fsverityDigest(content)
		payload := fmt.Sprintf("%x/%x", d[:1], d[1:])
		objects[payload] = content
		add(p, &tree.Node{Mode: tree.TypeReg | mode, Size: uint64(len(content)), Payload: payload, Digest: &d})
	}
	d := tree.NewDir(0o750)
	d.UID, d.GID, d.Mtime = 1000, 100, tree.Time{Sec: 1600000100, Nsec: 123}
	add("/etc", d)
	add("/etc/hostname", &tree.Node{Mode: tree.TypeReg | 0o644, Size: 5, Content: []byte("host\n"), Nlink: 2,
		Xattrs: []tree.Xattr{{Name: "user.note", Value: []byte("a b=c")}, {Name: "trusted.overlay.opaque", Value: []byte("y")}}})
	big := bytes.Repeat([]byte("0123456789abcdef"), 300)
	add("/etc/big-inline", &tree.Node{Mode: tree.TypeReg | 0o600, Size: uint64(len(big)), Content: big, UID: 70000, GID: 70001, Mtime: tree.Time{Sec: 1700000000, Nsec: 5}})
	add("/etc/empty", &tree.Node{Mode: tree.TypeReg | 0o4755})
	ext("/usr-bin-tool", bytes.Repeat([]byte("binary\x00"), 3000), 0o755)
	ext("/etc/shared-a", []byte("same content in two files\n"), 0o644)
	ext("/etc/shared-b", []byte("same content in two files\n"), 0o640)
	add("/lnk", &tree.Node{Mode: tree.TypeSymlink | 0o777, Target: "etc/hostname"})
	add("/long-lnk", &tree.Node{Mode: tree.TypeSymlink | 0o777, Target: strings.Repeat("x/", 2000)})
	add("/null", &tree.Node{Mode: tree.TypeChar | 0o666, Rdev: uint32(unix.Mkdev(1, 3))})
	add("/sda", &tree.Node{Mode: tree.TypeBlock | 0o660, Rdev: uint32(unix.Mkdev(8, 0)), GID: 6})
	add("/fifo", &tree.Node{Mode: tree.TypeFifo | 0o644})
	add("/sock", &tree.Node{Mode: tree.TypeSocket | 0o755})
	many := tree.NewDir(0o755)
	add("/many", many)
	for i := 0; i < 400; i++ {
		add(fmt.Sprintf("/many/entry-with-a-longish-name-%04d", i), &tree.Node{Mode: tree.TypeReg | 0o644})
	}
	if err := tr.Link("/etc/hostname-link", "/etc/hostname"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*tree.Node{tr.Root, d, many} {
		n.Xattrs = append(n.Xattrs, tree.Xattr{Name: "user.dir", Value: []byte("1")})
	}
	return tr, objects
}

// materialize creates tr under dir as real files (the expected tree).
func materialize(t testing.TB, tr *tree.Tree, objects externalContent, dir string) {
	t.Helper()
	first := map[*tree.Node]string{}
	var dirs []string
	err := tr.Walk(func(p string, d tree.Dirent) error {
		n, full := d.Node, filepath.Join(dir, p)
		if prev, ok := first[n]; ok {
			return os.Link(prev, full)
		}
		first[n] = full
		var err error
		switch n.Type() {
		case tree.TypeDir:
			if p != "/" {
				err = os.Mkdir(full, 0o700)
			}
			dirs = append(dirs, full)
		case tree.TypeReg:
			data := n.Content
			if n.IsExternal() {
				data = objects[n.Payload]
			}
			err = os.WriteFile(full, data, 0o600)
		case tree.TypeSymlink:
			err = os.Symlink(n.Target, full)
		default:
			err = unix.Mknod(full, n.Mode, int(n.Rdev))
		}
		if err != nil {
			return err
		}
		return applyMeta(full, n)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Directory mtimes last: creating entries changes them.
	for i := len(dirs) - 1; i >= 0; i-- {
		n, _ := tr.Lookup(strings.TrimPrefix(dirs[i], dir))
		setTime(t, dirs[i], n)
	}
}

func applyMeta(p string, n *tree.Node) error {
	if err := os.Lchown(p, int(n.UID), int(n.GID)); err != nil {
		return err
	}
	if n.Type() != tree.TypeSymlink {
		if err := unix.Chmod(p, n.Mode&0o7777); err != nil {
			return err
		}
	}
	for _, x := range n.Xattrs {
		if err := unix.Lsetxattr(p, x.Name, x.Value, 0); err != nil {
			return fmt.Errorf("setxattr %s %s: %w", p, x.Name, err)
		}
	}
	ts := []unix.Timespec{{Sec: n.Mtime.Sec, Nsec: int64(n.Mtime.Nsec)}, {Sec: n.Mtime.Sec, Nsec: int64(n.Mtime.Nsec)}}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func setTime(t testing.TB, p string, n *tree.Node) {
	ts := []unix.Timespec{{Sec: n.Mtime.Sec, Nsec: int64(n.Mtime.Nsec)}, {Sec: n.Mtime.Sec, Nsec: int64(n.Mtime.Nsec)}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
}

// writeObjects stores the external contents under dir at their payloads.
func writeObjects(t testing.TB, objects externalContent, dir string) {
	t.Helper()
	for payload, data := range objects {
		p := filepath.Join(dir, payload)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func writeImageFile(t testing.TB, tr *tree.Tree, opts Options, path string) []byte {
	t.Helper()
	img := writeImage(t, tr, opts)
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	return img
}

func runFsck(t testing.TB, fsck, image string) {
	t.Helper()
	out, err := exec.Command(fsck, image).CombinedOutput()
	if err != nil {
		t.Fatalf("fsck.erofs %s: %v\n%s", image, err, out)
	}
}

func diffListings(t testing.TB, what string, got, want []string) {
	t.Helper()
	g, w := strings.Join(got, "\n"), strings.Join(want, "\n")
	if g == w {
		return
	}
	gs, ws := map[string]bool{}, map[string]bool{}
	for _, l := range got {
		gs[l] = true
	}
	for _, l := range want {
		ws[l] = true
	}
	var diff []string
	for _, l := range want {
		if !gs[l] {
			diff = append(diff, "- "+l)
		}
	}
	for _, l := range got {
		if !ws[l] {
			diff = append(diff, "+ "+l)
		}
	}
	t.Errorf("%s differs (- want, + got):\n%s", what, strings.Join(diff, "\n"))
}

// TestKernelMount mounts our image as EROFS and through overlayfs with a
// data-only lower of objects, and checks: fsck.erofs accepts the image; the
// raw EROFS mount shows what our reader's fs.FS view shows; the overlay
// mount equals the source tree materialized as real files (types, modes,
// owners, mtimes, sizes, contents, devices, symlinks, hard links, xattrs).
func TestKernelMount(t *testing.T) {
	testutil.RequireRoot(t)
	fsck := testutil.RequireTool(t, "fsck.erofs")
	tmp := t.TempDir()
	tr, objects := mountTree(t)
	for _, v := range []uint32{0, 1} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			dir := filepath.Join(tmp, fmt.Sprint("v", v))
			objDir, mnt, ovl, want := filepath.Join(dir, "objects"), filepath.Join(dir, "erofs"), filepath.Join(dir, "ovl"), filepath.Join(dir, "want")
			for _, d := range []string{objDir, mnt, ovl, want} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			writeObjects(t, objects, objDir)
			imgPath := filepath.Join(dir, "image.cfs")
			img := writeImageFile(t, tr, Options{MinVersion: v, MaxVersion: v}, imgPath)
			runFsck(t, fsck, imgPath)
			testutil.MountErofs(t, imgPath, mnt)
			got, err := testutil.ListTree(mnt)
			if err != nil {
				t.Fatal(err)
			}
			diffListings(t, "EROFS mount vs reader", got, readerListing(t, img))
			testutil.MountOverlay(t, testutil.Overlay{Lower: []string{mnt}, DataLower: []string{objDir}}, ovl)
			materialize(t, tr, objects, want)
			got, err = testutil.ListTree(ovl)
			if err != nil {
				t.Fatal(err)
			}
			wantList, err := testutil.ListTree(want)
			if err != nil {
				t.Fatal(err)
			}
			diffListings(t, "overlay mount vs source tree", got, wantList)
			if os.Getenv("SHOWLIST") != "" {
				t.Logf("%s", strings.Join(got, "\n"))
			}
		})
	}
}

// readerListing lists an image through our fs.FS view in the format of
// testutil.ListTree (external files read as the zeros a raw EROFS mount
// shows for null chunks).
func readerListing(t testing.TB, img []byte) []string {
	t.Helper()
	im, err := Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	var walk func(p string)
	walk = func(p string) {
		fi, err := im.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		info := fi.Sys().(*InodeInfo)
		line := fmt.Sprintf("%s mode=%o owner=%d:%d mtime=%d", p, info.Mode, info.UID, info.GID, info.Mtime.Sec)
		switch info.Mode & tree.TypeMask {
		case tree.TypeReg:
			h := sha256.New()
			if f, err := im.Open(p); err == nil {
				_, _ = io.Copy(h, f)
			} else {
				_, _ = io.CopyN(h, zeroReader{}, fi.Size())
			}
			line += fmt.Sprintf(" size=%d nlink=%d sha256=%x", fi.Size(), info.Nlink, h.Sum(nil))
		case tree.TypeSymlink:
			target, _ := im.ReadLink(p)
			line += " -> " + target
		case tree.TypeChar, tree.TypeBlock:
			line += fmt.Sprintf(" rdev=%d:%d", unix.Major(uint64(info.Rdev)), unix.Minor(uint64(info.Rdev)))
		}
		xs, err := im.Xattrs(p)
		if err != nil {
			t.Fatal(err)
		}
		var xl []string
		for _, x := range xs {
			if x.Name != "security.selinux" {
				xl = append(xl, fmt.Sprintf("%s=%q", x.Name, x.Value))
			}
		}
		sort.Strings(xl)
		if len(xl) > 0 {
			line += " " + strings.Join(xl, ",")
		}
		lines = append(lines, line)
		if fi.IsDir() {
			ents, err := im.ReadDir(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				walk(strings.TrimPrefix(p+"/"+e.Name(), "./"))
			}
		}
	}
	walk(".")
	sort.Strings(lines)
	return lines
}

type zeroReader struct{}

func (zeroReader) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// TestKernelWhiteouts checks that whiteouts in our image hide lower files:
// the composefs overlay (image + data-only objects) is stacked over a base
// directory holding the whited-out names, as a container's layers are.
// The escaped whiteouts must not hide anything in the composefs overlay
// itself, where they appear as files carrying trusted.overlay.whiteout.
// With format 1 the merged listing is exact; with format 0 lookups hide the
// whited-out names but readdir still lists them on this kernel.
func TestKernelWhiteouts(t *testing.T) {
	testutil.RequireRoot(t)
	fsck := testutil.RequireTool(t, "fsck.erofs")
	tr := tree.New()
	add := func(p string, n *tree.Node) {
		t.Helper()
		n.Nlink = 1
		if err := tr.Insert(p, n); err != nil {
			t.Fatal(err)
		}
	}
	add("/d", tree.NewDir(0o755))
	add("/d/gone", &tree.Node{Mode: tree.TypeChar})
	add("/d/kept", &tree.Node{Mode: tree.TypeReg | 0o644, Size: 3, Content: []byte("new")})
	add("/top-gone", &tree.Node{Mode: tree.TypeChar})
	for _, v := range []uint32{0, 1} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			dir := t.TempDir()
			objDir, mnt, cfs, base, merged := filepath.Join(dir, "objects"), filepath.Join(dir, "erofs"), filepath.Join(dir, "cfs"), filepath.Join(dir, "base"), filepath.Join(dir, "merged")
			for _, d := range []string{objDir, mnt, cfs, filepath.Join(base, "d"), merged} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range []string{"d/gone", "d/other", "d/kept", "top-gone", "top-other"} {
				if err := os.WriteFile(filepath.Join(base, f), []byte("old"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			imgPath := filepath.Join(dir, "image.cfs")
			writeImageFile(t, tr, Options{MinVersion: v, MaxVersion: v}, imgPath)
			runFsck(t, fsck, imgPath)
			testutil.MountErofs(t, imgPath, mnt)
			testutil.MountOverlay(t, testutil.Overlay{Lower: []string{mnt}, DataLower: []string{objDir}}, cfs)
			// In the composefs mount itself the whiteouts are plain files
			// carrying the unescaped overlay whiteout xattr.
			if _, err := unix.Lgetxattr(filepath.Join(cfs, "d/gone"), "trusted.overlay.whiteout", nil); err != nil {
				t.Errorf("cfs/d/gone: trusted.overlay.whiteout: %v", err)
			}
			testutil.MountOverlay(t, testutil.Overlay{Lower: []string{cfs, base}}, merged)
			for _, p := range []string{"d/gone", "top-gone"} {
				if _, err := os.Lstat(filepath.Join(merged, p)); !os.IsNotExist(err) {
					t.Errorf("merged/%s: lstat err = %v, want not-exist (whited out)", p, err)
				}
			}
			for _, p := range []string{"d/other", "top-other"} {
				if _, err := os.Lstat(filepath.Join(merged, p)); err != nil {
					t.Errorf("merged/%s: %v, want the lower file visible", p, err)
				}
			}
			if v == 0 {
				// Format 0 lacks the parent's opaque=x marker, so this
				// kernel's readdir still lists xattr whiteouts (lookups hide
				// them, checked above): the reason format 1 exists.
				return
			}
			got, err := testutil.ListTree(merged)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, l := range got {
				names = append(names, strings.Fields(l)[0])
			}
			want := ". d d/kept d/other top-other"
			if g := strings.Join(names, " "); g != want {
				t.Errorf("merged tree = %q, want %q", g, want)
			}
			if data, err := os.ReadFile(filepath.Join(merged, "d/kept")); err != nil || string(data) != "new" {
				t.Errorf("d/kept = %q, %v; want the upper layer's content", data, err)
			}
		})
	}
}

// TestFsckImages runs fsck.erofs on the image of every corpus dump and
// spec example (and so on mkcomposefs' exact bytes, which ours equal).
func TestFsckImages(t *testing.T) {
	testutil.RequireRoot(t)
	fsck := testutil.RequireTool(t, "fsck.erofs")
	dir := t.TempDir()
	check := func(name string, dump []byte, strict bool, opts Options) {
		t.Run(name, func(t *testing.T) {
			img, _, err := buildImage(dump, strict, opts)
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, strings.ReplaceAll(name, "/", "_")+".img")
			if err := os.WriteFile(p, img, 0o644); err != nil {
				t.Fatal(err)
			}
			runFsck(t, fsck, p)
		})
	}
	for _, c := range corpusCases(t) {
		if c.sha256 != "" {
			check(c.name, testutil.ReadCorpusFile(t, c.path), c.strict, c.options())
		}
	}
	for _, ex := range specExamples() {
		check(ex.name, []byte(ex.dump), true, ex.opts)
	}
}

// TestKernelReadsCorpusImages mounts the images of real-world corpus dumps
// (built by our writer, byte-identical to mkcomposefs') and checks that the
// kernel and our reader see the same metadata for every entry: type, mode,
// owner, nanosecond mtime, size, nlink, device number, symlink target and
// every xattr (contents of external files are null chunks and skipped).
func TestKernelReadsCorpusImages(t *testing.T) {
	testutil.RequireRoot(t)
	for _, c := range corpusCases(t) {
		switch c.name {
		case "cs9-x86_64-minimal.dump.gz", "config-with-hard-link.dump.gz", "special_v1.dump", "longlink.dump":
		default:
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			img, _, err := buildImage(testutil.ReadCorpusFile(t, c.path), c.strict, c.options())
			if err != nil {
				t.Fatal(err)
			}
			imgPath, mnt := filepath.Join(dir, "image"), filepath.Join(dir, "mnt")
			if err := os.WriteFile(imgPath, img, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(mnt, 0o755); err != nil {
				t.Fatal(err)
			}
			testutil.MountErofs(t, imgPath, mnt)
			got := kernelMeta(t, mnt)
			want := readerMeta(t, img)
			if len(want) < 10 {
				t.Fatalf("reader saw only %d entries", len(want))
			}
			diffListings(t, "kernel vs reader metadata", got, want)
		})
	}
}

func metaLine(p string, mode, uid, gid uint32, mt tree.Time, size uint64, nlink uint32, rdev uint64, target string, xattrs []string) string {
	sort.Strings(xattrs)
	return fmt.Sprintf("%s %o %d:%d %d.%d size=%d nlink=%d rdev=%d:%d %q %s", p, mode, uid, gid, mt.Sec, mt.Nsec,
		size, nlink, unix.Major(rdev), unix.Minor(rdev), target, strings.Join(xattrs, ","))
}

func kernelMeta(t testing.TB, root string) []string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		target := ""
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			target, _ = os.Readlink(p)
		}
		var xl []string
		buf := make([]byte, 1<<16)
		n, err := unix.Llistxattr(p, buf)
		if err != nil {
			return err
		}
		for _, name := range strings.Split(string(buf[:n]), "\x00") {
			if name == "" {
				continue
			}
			val := make([]byte, 1<<16)
			m, err := unix.Lgetxattr(p, name, val)
			if errors.Is(err, unix.ENODATA) && userXattrHidden(st.Mode, name) {
				xl = append(xl, name+"=<hidden>")
				continue
			}
			if err != nil {
				return fmt.Errorf("%s %s: %w", p, name, err)
			}
			xl = append(xl, fmt.Sprintf("%s=%q", name, val[:m]))
		}
		lines = append(lines, metaLine(rel, st.Mode, st.Uid, st.Gid, tree.Time{Sec: st.Mtim.Sec, Nsec: uint32(st.Mtim.Nsec)},
			uint64(st.Size), uint32(st.Nlink), st.Rdev, target, xl))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return lines
}

func readerMeta(t testing.TB, img []byte) []string {
	t.Helper()
	im, err := Open(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	err = fs.WalkDir(im, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := im.Lstat(p)
		if err != nil {
			return err
		}
		info := fi.Sys().(*InodeInfo)
		target := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if target, err = im.ReadLink(p); err != nil {
				return err
			}
		}
		xs, err := im.Xattrs(p)
		if err != nil {
			return err
		}
		var xl []string
		for _, x := range xs {
			if userXattrHidden(info.Mode, x.Name) {
				xl = append(xl, x.Name+"=<hidden>")
				continue
			}
			xl = append(xl, fmt.Sprintf("%s=%q", x.Name, x.Value))
		}
		lines = append(lines, metaLine(p, info.Mode, info.UID, info.GID, info.Mtime, uint64(fi.Size()), info.Nlink,
			uint64(unix.Mkdev(uint32(info.Rdev>>8&0xfff), info.Rdev&0xff|info.Rdev>>12&0xfff00)), target, xl))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return lines
}

// userXattrHidden reports whether the kernel lists but refuses to read an
// xattr: user.* xattrs of anything but regular files and directories read
// as ENODATA (fs/xattr.c xattr_permission).
func userXattrHidden(mode uint32, name string) bool {
	t := mode & tree.TypeMask
	return strings.HasPrefix(name, "user.") && t != tree.TypeReg && t != tree.TypeDir
}

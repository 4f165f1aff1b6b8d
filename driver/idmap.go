package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"go.podman.io/storage/pkg/idmap"
	"go.podman.io/storage/pkg/idtools"
	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/internal/atomicfile"
	"github.com/cfs-storage/cfs-storage/layers"
	"github.com/cfs-storage/cfs-storage/layers/tree"
)

// ID-mapped layers (containers in a user namespace: podman's --userns=auto,
// --uidmap, storage.conf's remap-uids) come in two ways, as with
// c/storage's overlay driver; Status's "Supports shifting" and
// "ID-mapped layers" lines say which one the store uses.
//
// Shifting (idmapped mounts), where the kernel can and
// _CONTAINERS_OVERLAY_DISABLE_IDMAP is not "yes": SupportsShifting is
// true, so c/storage creates the layers of mapped containers with the
// host's IDs, copies nothing, and passes the container's maps to Get.
// The mount then idmaps the detached EROFS mount of the layer's image
// (mount_setattr(MOUNT_ATTR_IDMAP) on its descriptor, with the user
// namespace of a helper process holding the maps) before the overlay
// takes it as its lower layer: the files show the mapped owners. The
// object store, a data-only layer, gives only file data and is not
// mapped. Neither is the upper directory (idmapping it makes overlay
// read-only): what the container writes lands there with host IDs, as
// with overlay, and its root is chowned to the mapped root so that the
// container's root owns "/". Diff, Changes and DiffSize read owners back
// through the layer's maps (diff.go). A mount without maps shows the
// owners as stored.
//
// Remapped copies otherwise: c/storage creates a layer whose maps differ
// from its parent's and calls UpdateLayerIDMap to rewrite the owners.
// Overlay chowns through a mount and then rotates its diff directory, so
// that the chown becomes part of the layer's lower layers, not of its
// own diff. cfs does the same without a mount: the tree of the parent
// chain, owners remapped, is written as the layer's base image
// (layers/<id>/base.cfs, layerMeta.Base), which the layer's own diff
// applies to in place of the chain, and which a writable layer mounts
// as its lower layer; a sealed layer's own diff is remapped too. The
// layer's upper directory stays empty, so later ApplyDiff, Changes,
// Diff and DiffSize see only the layer's own changes. The base image
// costs metadata only (contents stay in the object store, shared); the
// layer's refs hold the base's objects too.

// disableIDMapEnv turns shifting off when "yes", as for c/storage's
// overlay driver.
const disableIDMapEnv = "_CONTAINERS_OVERLAY_DISABLE_IDMAP"

// idMapping is the ID mapping an idmapped mount shows owners through:
// an on-disk ID is a container ID, shown as its host ID.
type idMapping struct {
	uids, gids []idtools.IDMap
}

// newIDMapping returns the mapping of uids and gids, or nil when either
// is empty (as overlay, which maps only with both).
func newIDMapping(uids, gids []idtools.IDMap) *idMapping {
	if len(uids) == 0 || len(gids) == 0 {
		return nil
	}
	return &idMapping{uids: uids, gids: gids}
}

// apply idmaps the detached mount fd: a helper process is created in a
// new user namespace with the maps, and the namespace is given to
// mount_setattr. A mount can be idmapped only once.
func (m *idMapping) apply(fd int) error {
	pid, cleanup, err := idmap.CreateUsernsProcess(m.uids, m.gids)
	if err != nil {
		return fmt.Errorf("user namespace for an idmapped mount: %w", err)
	}
	defer cleanup()
	ns, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/user")
	if err != nil {
		return fmt.Errorf("user namespace for an idmapped mount: %w", err)
	}
	defer ns.Close()
	err = unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &unix.MountAttr{
		Attr_set:  unix.MOUNT_ATTR_IDMAP,
		Userns_fd: uint64(ns.Fd()),
	})
	if err != nil {
		return fmt.Errorf("idmap the EROFS mount (mount_setattr): %w", err)
	}
	return nil
}

// chownRoot gives the directory dir (an upper directory's root) the
// mapped root's owner.
func (m *idMapping) chownRoot(dir string) error {
	uid, gid, err := idtools.GetRootUIDGID(m.uids, m.gids)
	if err != nil {
		return fmt.Errorf("root of the ID mapping: %w", err)
	}
	if err := os.Lchown(dir, uid, gid); err != nil {
		return fmt.Errorf("chown the upper directory to the mapped root: %w", err)
	}
	return nil
}

// idmapProbe is the kernel's answer about idmapped mounts, asked once
// per core.
type idmapProbe struct {
	once sync.Once
	err  error // nil: idmapped EROFS layers work
}

// idmapRecordFile, in the run directory, records the probe's answer for
// every process until the next boot (the run directory is on tmpfs):
// "yes", or "no: " and why.
const idmapRecordFile = "idmapped-mounts"

// supportsShifting reports whether mounts can show mapped owners
// (idmapped mounts): not when _CONTAINERS_OVERLAY_DISABLE_IDMAP=yes, nor
// where the kernel cannot.
func (d *core) supportsShifting() bool {
	return os.Getenv(disableIDMapEnv) != "yes" && d.idmappedMounts() == nil
}

// shiftingStatus says how ID-mapped layers are made, for Status.
func (d *core) shiftingStatus() string {
	switch {
	case os.Getenv(disableIDMapEnv) == "yes":
		return "remapped copies (" + disableIDMapEnv + "=yes)"
	case d.idmappedMounts() != nil:
		return "remapped copies (no idmapped mounts: " + d.idmappedMounts().Error() + ")"
	}
	return "idmapped mounts"
}

// idmappedMounts returns nil if the kernel can mount an idmapped EROFS
// image as an overlay lower layer, else why not. The answer recorded in
// the run directory is used; else the kernel is probed and the answer
// recorded.
func (d *core) idmappedMounts() error {
	d.idmap.once.Do(func() {
		record := filepath.Join(d.run, idmapRecordFile)
		if data, err := os.ReadFile(record); err == nil {
			s := strings.TrimSpace(string(data))
			if s == "yes" {
				return
			}
			if reason, ok := strings.CutPrefix(s, "no: "); ok {
				d.idmap.err = errors.New(reason)
				return
			}
		}
		d.idmap.err = d.probeIDMapped()
		answer := "yes\n"
		if d.idmap.err != nil {
			answer = "no: " + d.idmap.err.Error() + "\n"
		}
		_ = atomicfile.WriteFile(record, []byte(answer), atomicfile.Options{Flush: atomicfile.FlushNone}) // a cache: it is probed again if missing
	})
	return d.idmap.err
}

// probeIDMapped mounts, in a scratch directory, what a shifted mount is:
// an EROFS image holding one file owned by 0:0 as a detached mount,
// idmapped with 0 -> 1, under an overlay with a data-only layer and an
// upper directory; the file must show as owned by 1:1.
func (d *core) probeIDMapped() error {
	dir, err := os.MkdirTemp(filepath.Join(d.home, "tmp"), "idmap-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	t := tree.New()
	if err := t.Insert("/f", &tree.Node{Mode: tree.TypeReg | 0o644, Nlink: 1}); err != nil {
		return err
	}
	image := filepath.Join(dir, "probe.cfs")
	if err := writeImage(image, t); err != nil {
		return err
	}
	for _, sub := range []string{"data", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			return err
		}
	}
	fd, err := openErofs(image)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	shift := &idMapping{uids: []idtools.IDMap{{ContainerID: 0, HostID: 1, Size: 1}}, gids: []idtools.IDMap{{ContainerID: 0, HostID: 1, Size: 1}}}
	if err := shift.apply(fd); err != nil {
		return err
	}
	merged := filepath.Join(dir, "merged")
	spec := overlaySpec{
		Lower:   "/proc/self/fd/" + strconv.Itoa(fd),
		Data:    []string{filepath.Join(dir, "data")},
		Upper:   filepath.Join(dir, "upper"),
		Work:    filepath.Join(dir, "work"),
		Options: []string{"metacopy=on", "redirect_dir=on"},
	}
	if err := d.mountOnErofs(filepath.Join(dir, "lower"), merged, spec, fd); err != nil {
		return fmt.Errorf("overlay on an idmapped EROFS mount: %w", err)
	}
	defer unix.Unmount(merged, unix.MNT_DETACH)
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(merged, "f"), &st); err != nil {
		return err
	}
	if st.Uid != 1 || st.Gid != 1 {
		return fmt.Errorf("an idmapped EROFS mount under overlay shows 0:0 as %d:%d, not 1:1", st.Uid, st.Gid)
	}
	return nil
}

// idMapper maps container IDs to host IDs with m (nil for no mapping).
func idMapper(m *idtools.IDMappings) layers.IDMapper {
	if m == nil || m.Empty() {
		return nil
	}
	return func(uid, gid uint32) (uint32, uint32, error) {
		p, err := m.ToHost(idtools.IDPair{UID: int(uid), GID: int(gid)})
		if err != nil {
			return 0, 0, err
		}
		return uint32(p.UID), uint32(p.GID), nil
	}
}

// containerIDs maps host IDs back to the container IDs of m (nil or
// empty: the same IDs); an ID m does not map is kept as it is (an
// unmapped 0:0 that UpdateLayerIDMap left, a file host root chowned).
func containerIDs(m *idtools.IDMappings) layers.IDMapper {
	if m == nil || m.Empty() {
		return nil
	}
	return func(uid, gid uint32) (uint32, uint32, error) {
		if u, err := idtools.RawToContainer(int(uid), m.UIDs()); err == nil {
			uid = uint32(u)
		}
		if g, err := idtools.RawToContainer(int(gid), m.GIDs()); err == nil {
			gid = uint32(g)
		}
		return uid, gid, nil
	}
}

// remapper maps a host owner through toContainer back to the container
// IDs, then through toHost to the new host IDs, as c/storage's
// ChownPathByMaps: a 0:0 that toContainer does not map stays 0:0 (a
// parent layer that should have had mapped IDs), and a container ID
// toHost does not map becomes the overflow ID.
func remapper(toContainer, toHost *idtools.IDMappings) layers.IDMapper {
	return func(uid, gid uint32) (uint32, uint32, error) {
		u, g := int(uid), int(gid)
		if toContainer != nil && !toContainer.Empty() {
			cu, cg, err := toContainer.ToContainer(idtools.IDPair{UID: u, GID: g})
			if err != nil && (u != 0 || g != 0) {
				return 0, 0, fmt.Errorf("host IDs %d:%d: %w", u, g, err)
			}
			if err == nil {
				u, g = cu, cg
			}
		}
		if toHost != nil && !toHost.Empty() {
			p, err := toHost.ToHostOverflow(idtools.IDPair{UID: u, GID: g})
			if err != nil {
				return 0, 0, fmt.Errorf("container IDs %d:%d: %w", u, g, err)
			}
			u, g = p.UID, p.GID
		}
		return uint32(u), uint32(g), nil
	}
}

// mapTree rewrites the owners of every node of t with mapIDs (nil: none),
// each node once however many links it has.
func mapTree(t *tree.Tree, mapIDs layers.IDMapper) error {
	if mapIDs == nil || t == nil {
		return nil
	}
	seen := map[*tree.Node]bool{}
	return t.Walk(func(p string, e tree.Dirent) error {
		if seen[e.Node] {
			return nil
		}
		seen[e.Node] = true
		uid, gid, err := mapIDs(e.Node.UID, e.Node.GID)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		e.Node.UID, e.Node.GID = uid, gid
		return nil
	})
}

// updateIDMap remaps the owners of everything layer id shows with mapIDs
// (for other ID mappings than its parent's), its root becoming owned by
// rootUID:rootGID (the new mappings' root, as overlay makes its new diff
// directory): the remapped tree of its parent chain (or of its base
// already) becomes its base image, and its own diff is remapped in
// place. chownUpper remaps the upper directory of a writable layer that
// has content already (c/storage calls UpdateLayerIDMap on new, empty
// layers).
func (d *core) updateIDMap(ctx context.Context, id string, mapIDs layers.IDMapper, rootUID, rootGID uint32, chownUpper func(dir string) error) error {
	if err := d.remap(ctx, id, mapIDs, rootUID, rootGID, chownUpper); err != nil {
		return fmt.Errorf("cfs: remap owners of %s: %w", id, err)
	}
	return nil
}

func (d *core) remap(ctx context.Context, id string, mapIDs layers.IDMapper, rootUID, rootGID uint32, chownUpper func(dir string) error) error {
	m, err := d.layers.readMeta(id)
	if err != nil {
		return err
	}
	if d.mounted(id) {
		return errors.New("the layer is mounted")
	}
	base, err := d.baseTree(ctx, id, m)
	if err != nil {
		return err
	}
	if base != nil {
		if err := mapTree(base, mapIDs); err != nil {
			return err
		}
		base.Root.UID, base.Root.GID = rootUID, rootGID
	}
	// The flattened images of the layer (and of any above it) no
	// longer show what it holds: they go first.
	if err := d.images.dropChainsWith(id); err != nil {
		return err
	}
	if !m.Sealed {
		return d.remapWritable(ctx, id, m, base, rootUID, rootGID, chownUpper)
	}
	diff, err := d.images.readDiff(id)
	if err != nil {
		return err
	}
	if err := mapTree(diff, mapIDs); err != nil {
		return err
	}
	diff.Root.UID, diff.Root.GID = rootUID, rootGID
	if base != nil {
		if err := d.images.writeBase(d.layers.baseImage(id), base); err != nil {
			return err
		}
		m.Base = true
	}
	_, err = d.commitLayer(ctx, id, m, func(layers.Contents) (*tree.Tree, error) { return diff, nil })
	return err
}

// remapWritable remaps the writable layer id: its base image written
// (and its objects registered as the layer's refs), its upper directory
// remapped if it has content, and its root owned by rootUID:rootGID.
func (d *core) remapWritable(ctx context.Context, id string, m layerMeta, base *tree.Tree, rootUID, rootGID uint32, chownUpper func(dir string) error) error {
	upper := d.layers.upperDir(id)
	names, err := readDirNames(upper)
	if err != nil {
		return err
	}
	if len(names) > 0 {
		if err := chownUpper(upper); err != nil {
			return err
		}
	}
	if err := os.Lchown(upper, int(rootUID), int(rootGID)); err != nil {
		return err
	}
	if base == nil {
		return nil // no parent: nothing below the upper directory
	}
	_, err = d.contents.commit(ctx, id, func(layers.Contents) (*tree.Tree, error) { return base, nil }, func(t *tree.Tree) error {
		return d.images.writeBase(d.layers.baseImage(id), t)
	})
	if err != nil {
		return err
	}
	m.Base = true
	return d.layers.writeMeta(id, m)
}

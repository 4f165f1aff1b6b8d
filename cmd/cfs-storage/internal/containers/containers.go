// Package containers implements the container commands of cfs-storage:
// create, rm, mount, umount, ps and run. A container is a c/storage
// container (a writable layer over its image); run adds an OCI runtime.
package containers

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	storage "go.podman.io/storage"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/images"
	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage/internal/state"
)

// metadata is what cfs-storage records in a container's c/storage
// metadata.
type metadata struct {
	Image   string    `json:"image"`
	Command []string  `json:"command,omitempty"`
	Created time.Time `json:"created"`
}

// Create makes a container of image nameOrID, named name (optional).
func Create(store storage.Store, nameOrID, name string, command []string) (*storage.Container, *storage.Image, error) {
	img, err := images.Lookup(store, nameOrID)
	if err != nil {
		return nil, nil, err
	}
	var names []string
	if name != "" {
		names = []string{name}
	}
	md, err := json.Marshal(metadata{Image: images.DisplayName(img), Command: command, Created: time.Now().UTC()})
	if err != nil {
		return nil, nil, fmt.Errorf("encode container metadata: %w", err)
	}
	ctr, err := store.CreateContainer("", names, img.ID, "", string(md), nil)
	if err != nil {
		if errors.Is(err, storage.ErrDuplicateName) {
			return nil, nil, fmt.Errorf("create container of image %s: the name %q is already in use: choose another --name or remove that container with `cfs-storage rm %s`", shortID(img.ID), name, name)
		}
		return nil, nil, fmt.Errorf("create container of image %s (%s): %w", shortID(img.ID), images.DisplayName(img), err)
	}
	return ctr, img, nil
}

// lookup finds a container by ID, unique ID prefix or name.
func lookup(store storage.Store, nameOrID string) (*storage.Container, error) {
	c, err := store.Container(nameOrID)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, storage.ErrContainerUnknown) {
		return nil, fmt.Errorf("look up container %q: %w", nameOrID, err)
	}
	all, err := store.Containers()
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var found []storage.Container
	for _, c := range all {
		if len(nameOrID) >= 3 && strings.HasPrefix(c.ID, nameOrID) {
			found = append(found, c)
		}
	}
	switch len(found) {
	case 1:
		return &found[0], nil
	case 0:
		return nil, fmt.Errorf("no container with name or ID %q found: %w (list containers with `cfs-storage ps`)", nameOrID, storage.ErrContainerUnknown)
	}
	return nil, fmt.Errorf("container ID prefix %q is ambiguous (%d containers): give more characters", nameOrID, len(found))
}

// Remove unmounts and deletes a container, its writable layer and its
// run directory. It refuses a running container, as podman rm does
// without --force: its process would lose its files.
func Remove(store storage.Store, nameOrID string) (string, error) {
	c, err := lookup(store, nameOrID)
	if err != nil {
		return "", err
	}
	if running, err := state.Running(store, c.ID); err != nil {
		return "", err
	} else if running {
		return "", fmt.Errorf("container %s is running: it can be removed once its process exits", shortID(c.ID))
	}
	if _, err := store.Unmount(c.ID, true); err != nil && !errors.Is(err, storage.ErrLayerUnknown) {
		return "", fmt.Errorf("unmount container %s: %w", shortID(c.ID), err)
	}
	if err := store.DeleteContainer(c.ID); err != nil {
		return "", fmt.Errorf("remove container %s: %w", shortID(c.ID), err)
	}
	if err := state.RemoveRun(store, c.ID); err != nil {
		return "", fmt.Errorf("remove the run directory of container %s: %w", shortID(c.ID), err)
	}
	return c.ID, nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func containerName(c *storage.Container) string {
	if len(c.Names) > 0 {
		return c.Names[0]
	}
	return ""
}

package images

import (
	"context"
	"errors"
	"fmt"
	"strings"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/image"
	storage "go.podman.io/storage"
)

// ErrNoImage is returned (wrapped) when no image matches a name or ID.
var ErrNoImage = errors.New("image not known")

// Lookup finds an image by ID, unique ID prefix, or name as podman
// resolves it: the exact name, NAME:latest, localhost/NAME and the
// normalized docker name (docker.io/library/NAME:latest).
func Lookup(store storage.Store, nameOrID string) (*storage.Image, error) {
	for _, cand := range candidates(nameOrID) {
		img, err := store.Image(cand)
		if err == nil {
			return img, nil
		}
		if !errors.Is(err, storage.ErrImageUnknown) {
			return nil, fmt.Errorf("look up image %q: %w", nameOrID, err)
		}
	}
	if isHexPrefix(nameOrID) {
		all, err := store.Images()
		if err != nil {
			return nil, fmt.Errorf("list images: %w", err)
		}
		var found []storage.Image
		for _, img := range all {
			if strings.HasPrefix(img.ID, nameOrID) {
				found = append(found, img)
			}
		}
		if len(found) == 1 {
			return &found[0], nil
		}
		if len(found) > 1 {
			return nil, fmt.Errorf("image ID prefix %q is ambiguous (%d images): give more characters", nameOrID, len(found))
		}
	}
	return nil, fmt.Errorf("%s: %w (list images with `cfs-storage images`, pull one with `cfs-storage pull`)", nameOrID, ErrNoImage)
}

func candidates(name string) []string {
	out := []string{name}
	if !strings.Contains(lastPart(name), ":") && !strings.Contains(name, "@") {
		out = append(out, name+":latest")
	}
	if !strings.Contains(name, "/") {
		out = append(out, "localhost/"+name)
		if !strings.Contains(name, ":") {
			out = append(out, "localhost/"+name+":latest")
		}
	}
	if named, err := reference.ParseNormalizedNamed(name); err == nil {
		out = append(out, reference.TagNameOnly(named).String())
	}
	return out
}

func lastPart(name string) string {
	if i := strings.LastIndex(name, "/"); i >= 0 {
		return name[i+1:]
	}
	return name
}

func isHexPrefix(s string) bool {
	if len(s) < 3 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// Config returns the OCI config of an image in the store (entrypoint,
// cmd, env, working directory, user), read through c/image's storage
// transport as podman reads it.
func Config(ctx context.Context, store storage.Store, img *storage.Image) (*imgspecv1.Image, error) {
	ref, err := storeRef(store, img)
	if err != nil {
		return nil, err
	}
	src, err := ref.NewImageSource(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("open image %s: %w", shortID(img.ID), err)
	}
	defer src.Close()
	unparsed := image.UnparsedInstance(src, nil)
	parsed, err := image.FromUnparsedImage(ctx, nil, unparsed)
	if err != nil {
		return nil, fmt.Errorf("read manifest of image %s: %w", shortID(img.ID), err)
	}
	cfg, err := parsed.OCIConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("read config of image %s: %w", shortID(img.ID), err)
	}
	return cfg, nil
}

// DisplayName is the first name of an image, or <none>.
func DisplayName(img *storage.Image) string {
	if len(img.Names) > 0 {
		return img.Names[0]
	}
	return "<none>"
}

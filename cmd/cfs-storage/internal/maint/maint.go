// Package maint implements the store maintenance commands of
// cfs-storage: fsck (verify the object store, and name the images and
// containers whose layers use a damaged object) and gc (remove objects
// no layer references).
package maint

import (
	"fmt"
	"sort"
	"strings"

	storage "go.podman.io/storage"
)

// users maps layers to the images and containers built on them.
type users struct {
	images     map[string][]string // layer ID → image descriptions
	containers map[string][]string // layer ID → container descriptions
}

// findUsers walks every image's layer chain; a container uses the
// layers of its image.
func findUsers(store storage.Store) (*users, error) {
	u := &users{images: map[string][]string{}, containers: map[string][]string{}}
	imgs, err := store.Images()
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	chain := map[string][]string{}
	for _, img := range imgs {
		desc := describe(img.ID, img.Names)
		for id := img.TopLayer; id != ""; {
			chain[img.ID] = append(chain[img.ID], id)
			u.images[id] = append(u.images[id], desc)
			l, err := store.Layer(id)
			if err != nil {
				break // fsck of c/storage's own metadata is not ours; stop the chain
			}
			id = l.Parent
		}
	}
	ctrs, err := store.Containers()
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range ctrs {
		desc := describe(c.ID, c.Names)
		for _, id := range chain[c.ImageID] {
			u.containers[id] = append(u.containers[id], desc)
		}
	}
	return u, nil
}

func describe(id string, names []string) string {
	if len(names) > 0 {
		return fmt.Sprintf("%s (%.12s)", names[0], id)
	}
	return fmt.Sprintf("%.12s", id)
}

// of returns the sorted, distinct images and containers using layers.
func (u *users) of(layers []string) (imgs, ctrs []string) {
	return distinct(u.images, layers), distinct(u.containers, layers)
}

func distinct(m map[string][]string, layers []string) []string {
	set := map[string]bool{}
	for _, l := range layers {
		for _, d := range m[l] {
			set[d] = true
		}
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func shortLayers(layers []string) []string {
	out := make([]string, len(layers))
	for i, l := range layers {
		out[i] = fmt.Sprintf("%.12s", l)
	}
	return out
}

package hostlink

import "testing"

// readIndex builds a content index over r and looks up every regular file
// of entries (filled in with the index).
func readIndex(t *testing.T, r *Repo, entries []*Entry) {}

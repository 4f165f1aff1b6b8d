package layers

import (
	"context"
	"strings"
	"testing"

	"github.com/cfs-storage/cfs-storage/dedup"
	"github.com/cfs-storage/cfs-storage/dedup/fsverity"
)

func TestHashContents(t *testing.T) {
	ctx := context.Background()
	data := strings.Repeat("content ", 1000)
	obj, err := HashContents{}.Put(ctx, strings.NewReader(data+"and more"), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	want := fsverity.DigestBytes([]byte(data))
	if obj.Digest != want || obj.Payload != dedup.ObjectPath(want) {
		t.Errorf("Put = %+v, want digest %x at %s", obj, want, dedup.ObjectPath(want))
	}
	if _, err := (HashContents{}).Put(ctx, strings.NewReader("short"), 10); err == nil {
		t.Error("Put of a short content succeeded")
	}
}

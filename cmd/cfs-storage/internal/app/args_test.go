package app

import (
	"io"
	"slices"
	"testing"
)

func TestParseInterspersed(t *testing.T) {
	fs := NewFlags("x", "", io.Discard)
	v := fs.Bool("v", false, "")
	n := fs.String("n", "", "")
	pos, err := ParseInterspersed(fs, []string{"a", "--v", "b", "-n", "name", "c", "--", "-d", "--v"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b", "c", "-d", "--v"}; !slices.Equal(pos, want) || !*v || *n != "name" {
		t.Errorf("got %v v=%v n=%q, want %v", pos, *v, *n, want)
	}
	if err := WantArgs("x", pos, 1, 2, ""); err == nil {
		t.Error("WantArgs accepted 5 args for max 2")
	}
}

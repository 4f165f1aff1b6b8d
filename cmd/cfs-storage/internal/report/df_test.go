package report

import (
	"bytes"
	"strings"
	"testing"
)

// df shows the host lookups that linked nothing in, and the latest
// error, only when there were some (a store with a host repository).
func TestWriteHostLookups(t *testing.T) {
	for _, c := range []struct {
		lookups HostLookups
		want    []string
		not     []string
	}{
		{HostLookups{}, nil, []string{"host lookups:", "last lookup error:"}},
		{HostLookups{Declined: 5}, []string{"host lookups:       5 declined (no usable host object), 0 failed\n"}, []string{"last lookup error:"}},
		{HostLookups{Declined: 2, Failed: 1, LastError: "read index: EIO"}, []string{"2 declined", "1 failed", "last lookup error:  read index: EIO\n"}, nil},
	} {
		var b bytes.Buffer
		if err := Write(&b, &Usage{Driver: "cfs", Total: Totals{HostLookups: c.lookups}}); err != nil {
			t.Fatal(err)
		}
		for _, w := range c.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%+v: no %q in\n%s", c.lookups, w, b.String())
			}
		}
		for _, n := range c.not {
			if strings.Contains(b.String(), n) {
				t.Errorf("%+v: %q in\n%s", c.lookups, n, b.String())
			}
		}
	}
}

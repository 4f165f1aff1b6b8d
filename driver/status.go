package driver

import (
	"context"
	"fmt"
	"strconv"

	"github.com/cfs-storage/cfs-storage/dedup"
)

// status lists the driver's settings and the object store's figures:
// objects, bytes, how they were stored, and what deduplication saved.
func (d *core) status(ctx context.Context) [][2]string {
	host := d.opts.HostRepo
	if !d.opts.sharesHost() {
		host = "none"
	}
	out := [][2]string{
		{"Home", d.home},
		{"Objects directory", d.contents.objects.ObjectsDir()},
		{"Verity", d.opts.Verity.String()},
		{"Inline threshold", strconv.FormatInt(d.opts.InlineThreshold, 10)},
		{"Host repository", host},
		{"Host link mode", hostLinkName(d.opts.HostLink)},
		{"Partial-pull repository (pull option ostree_repos)", d.pull.dir},
		// The line c/storage's overlay driver shows (tools grep it), and
		// how ID-mapped layers are made.
		{"Supports shifting", strconv.FormatBool(d.supportsShifting())},
		{"ID-mapped layers", d.shiftingStatus()},
	}
	st, err := d.contents.objects.Stats(ctx)
	if err != nil {
		return append(out, [2]string{"Object store", "error: " + err.Error()})
	}
	out = append(out,
		[2]string{"Objects", strconv.FormatInt(st.Objects, 10)},
		[2]string{"Object bytes", strconv.FormatInt(st.Bytes, 10)},
		[2]string{"Object disk bytes", strconv.FormatInt(st.DiskBytes, 10)},
		[2]string{"Layers with objects", strconv.Itoa(st.Layers)},
		[2]string{"Deduplicated inserts", strconv.FormatInt(st.DedupHits, 10)},
		[2]string{"Bytes saved by deduplication", strconv.FormatInt(st.BytesSaved, 10)},
	)
	for _, m := range []dedup.LinkMode{dedup.LinkWritten, dedup.LinkHardlink, dedup.LinkReflink, dedup.LinkCopy} {
		c := st.ByMode[m]
		out = append(out, [2]string{"Objects stored by " + m.String(), fmt.Sprintf("%d (%d bytes)", c.Objects, c.Bytes)})
	}
	return append(out, d.contents.host.statusLines(st)...)
}

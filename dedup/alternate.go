package dedup

import (
	"context"
)

// tryAlternate links in the file opts.Alternate names for the absent
// object o, checking that its content hashes to o's digest. It reports
// false when there is no alternate or it cannot be used; the caller
// then stores the streamed bytes.
func (in *Ingest) tryAlternate(ctx context.Context, o Object, opts InsertOptions) (Object, bool) {
	if opts.Alternate == nil || o.Size == 0 || in.s.Has(o.Digest) {
		return o, false
	}
	path, release, ok := opts.Alternate(ctx, o.Digest, o.Size)
	if !ok {
		return o, false
	}
	if release != nil {
		defer release()
	}
	lo, res, err := in.insertFileExpect(ctx, path, opts.AlternateMode, o.Digest)
	if err != nil {
		return o, false
	}
	lo.Linked = res.Mode
	if res.Mode == LinkNone {
		lo.Linked = LinkAuto // the object appeared meanwhile: nothing was linked
	}
	lo.SHA256 = o.SHA256
	return lo, true
}

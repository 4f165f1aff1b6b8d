package erofs_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/cfs-storage/cfs-storage/layers/dumpfile"
	"github.com/cfs-storage/cfs-storage/layers/erofs"
)

// Example shows the round trip the CLI does: `mkcomposefs --from-file`
// (dumpfile.Parse + erofs.Write) and `composefs-info dump` (erofs.Open +
// Image.Tree + dumpfile.Write).
func Example() {
	dump := `/ 0 40755 2 0 0 0 0.0 - - -
/etc 0 40755 2 0 0 0 0.0 - - -
/etc/motd 6 100644 1 0 0 0 0.0 - hello\n -
/usr 0 40755 2 0 0 0 0.0 - - -
/usr/lib 0 40755 2 0 0 0 0.0 - - -
/usr/lib/big 100000 100755 1 0 0 0 0.0 ab/cdef - abababababababababababababababababababababababababababababababab user.k=v
/wh 0 20000 1 0 0 0 0.0 - - -
`
	t, err := dumpfile.Parse(strings.NewReader(dump), dumpfile.Options{Strict: true})
	if err != nil {
		panic(err)
	}
	var img bytes.Buffer
	if err := erofs.Write(&img, t, erofs.DefaultOptions()); err != nil {
		panic(err)
	}
	im, err := erofs.Open(bytes.NewReader(img.Bytes()), int64(img.Len()))
	if err != nil {
		panic(err)
	}
	motd, err := fs.ReadFile(im, "etc/motd")
	if err != nil {
		panic(err)
	}
	fmt.Printf("image: %d bytes, version %d; motd: %q\n", img.Len(), im.Version(), motd)
	view, err := im.Tree()
	if err != nil {
		panic(err)
	}
	if err := dumpfile.Write(os.Stdout, view); err != nil {
		panic(err)
	}
	// Output:
	// image: 16384 bytes, version 1; motd: "hello\n"
	// / 4096 40755 4 0 0 0 0.0 - - - trusted.overlay.opaque=x user.overlay.opaque=x
	// /etc 43 40755 2 0 0 0 0.0 - - -
	// /etc/motd 6 100644 1 0 0 0 0.0 - hello\n -
	// /usr 42 40755 3 0 0 0 0.0 - - -
	// /usr/lib 42 40755 2 0 0 0 0.0 - - -
	// /usr/lib/big 100000 100755 1 0 0 0 0.0 ab/cdef - abababababababababababababababababababababababababababababababab user.k=v
	// /wh 0 20000 1 0 0 0 0.0 - - -
}

package corpus

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// buildQuick builds the synthetic corpus in dir, from this machine's
// /bin/true (with its libraries) and generated files: no network.
func buildQuick(ctx context.Context, dir string, o Options) (*Corpus, error) {
	c := &Corpus{
		Kind: "quick", HostRepo: "host/repo", HostRef: "host", HostRoot: "host/root", Layout: "oci",
	}
	progs, err := programFiles(ctx, "/bin/true")
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(8, 2026))
	shared := randomFiles(rng, "usr/lib/bench/f", 160, 512, 256<<10)
	base := map[string]string{"etc/os-release": "ID=bench\nNAME=\"cfs-storage-bench quick\"\n", "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n"}

	// The host: the base files, the shared set and files of its own.
	hostRoot := filepath.Join(dir, "build", "host")
	if err := makeRoot(hostRoot, progs, base, shared, randomFiles(rng, "usr/lib/hostonly/h", 40, 1024, 128<<10)); err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Progress, "[corpus] ostree commit host\n")
	if err := os.MkdirAll(filepath.Join(dir, "host"), 0o755); err != nil {
		return nil, err
	}
	if err := commitHost(ctx, filepath.Join(dir, c.HostRepo), hostRoot, filepath.Join(dir, c.HostRoot)); err != nil {
		return nil, err
	}
	lay, err := newLayout(filepath.Join(dir, c.Layout))
	if err != nil {
		return nil, err
	}
	for _, sp := range quickSpecs(rng, shared) {
		b := &imageBuilder{lay: lay, root: filepath.Join(dir, "build", sp.name), prev: snapshot{}}
		if err := makeRoot(b.root, progs, base); err != nil {
			return nil, err
		}
		if err := b.layer("base"); err != nil {
			return nil, err
		}
		for _, s := range sp.stages {
			if err := b.stage(s); err != nil {
				return nil, fmt.Errorf("image %s: %w", sp.name, err)
			}
		}
		if err := lay.addImage(sp.name, epoch, []string{"/bin/true"}, b.layers); err != nil {
			return nil, err
		}
		c.Images = append(c.Images, Image{Name: sp.name, Description: sp.desc, Layers: len(b.layers)})
	}
	if err := os.RemoveAll(filepath.Join(dir, "build")); err != nil {
		return nil, err
	}
	return c, lay.finish()
}

// quickSpec is an image of the quick corpus: the base layer, then one
// layer per stage.
type quickSpec struct {
	name, desc string
	stages     []stage
}

// quickSpecs are the quick corpus's images; shared is the file set the
// host has too.
func quickSpecs(rng *rand.Rand, shared map[string]string) []quickSpec {
	replaced := map[string]string{}
	for i, k := range sortedKeys(shared)[:6] {
		replaced[k] = fmt.Sprintf("replaced content %d\n", i)
	}
	specs := []quickSpec{
		{name: "base", desc: "/bin/true and its libraries"},
		{name: "app", desc: "base + the host's shared files + files replaced and deleted", stages: []stage{
			{what: "shared files", write: shared},
			{what: "replace and delete", write: replaced, remove: sortedKeys(shared)[10:16]},
		}},
		{name: "tools", desc: "base + unique files + a directory deleted", stages: []stage{
			{what: "tools", write: merge(randomFiles(rng, "usr/lib/tools/t", 40, 1024, 128<<10), randomFiles(rng, "usr/lib/tools/sub/s", 10, 512, 4096))},
			{what: "delete a directory", remove: []string{"usr/lib/tools/sub"}, write: map[string]string{"usr/local/bin/tool": "#!/bin/sh\n"}},
		}},
	}
	multi := quickSpec{name: "multi", desc: "base + five layers, each adding, replacing and deleting"}
	for i := range 5 {
		s := stage{what: fmt.Sprintf("step %d", i), write: randomFiles(rng, fmt.Sprintf("opt/step%d/f", i), 8, 256, 32<<10)}
		if i > 0 {
			s.remove = []string{fmt.Sprintf("opt/step%d/f000", i-1)}
			s.write[fmt.Sprintf("opt/step%d/f001", i-1)] = fmt.Sprintf("replaced in step %d\n", i)
		}
		multi.stages = append(multi.stages, s)
	}
	// swap: 21 layers; a file becomes a directory, and entries under
	// that directory are deleted.
	swap := quickSpec{name: "swap", desc: "base + 20 layers: a file, the file replaced by a directory, entries under that directory deleted, then 17 small layers"}
	swap.stages = []stage{
		{what: "a file", write: map[string]string{"opt/swap/item": "a file\n", "opt/swap/keep": "kept\n"}},
		{what: "a directory replaces the file", remove: []string{"opt/swap/item"}, write: map[string]string{"opt/swap/item/a": "a\n", "opt/swap/item/b": "b\n", "opt/swap/item/c": "c\n"}},
		{what: "entries under the directory deleted", remove: []string{"opt/swap/item/a", "opt/swap/item/b"}},
	}
	for i := range 17 {
		swap.stages = append(swap.stages, stage{what: fmt.Sprintf("small layer %d", i), write: map[string]string{fmt.Sprintf("opt/swap/layer%02d", i): fmt.Sprintf("layer %d\n", i)}})
	}
	return append(specs, multi, swap)
}

// programFiles returns the files a program needs (itself and the
// libraries ldd lists) as absolute paths.
func programFiles(ctx context.Context, prog string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ldd", prog).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", prog, err)
	}
	files := []string{prog}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			files = append(files, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			files = append(files, f[0])
		}
	}
	return files, nil
}

// makeRoot creates a merged-/usr root with copies of the program files
// (at their resolved paths, with symlinks at the names asked for) and
// the given files.
func makeRoot(root string, progs []string, sets ...map[string]string) error {
	for _, d := range []string{"usr/bin", "usr/lib", "usr/lib64", "usr/sbin", "etc", "tmp", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	for _, l := range []string{"bin", "lib", "lib64", "sbin"} {
		if err := os.Symlink("usr/"+l, filepath.Join(root, l)); err != nil {
			return err
		}
	}
	for _, p := range progs {
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return err
		}
		if err := copyFile(real, filepath.Join(root, real)); err != nil {
			return err
		}
		mapped := p
		for _, l := range []string{"/bin/", "/lib/", "/lib64/", "/sbin/"} {
			if strings.HasPrefix(p, l) {
				mapped = "/usr" + p
			}
		}
		if mapped != real {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(root, mapped)), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(real, filepath.Join(root, mapped)); err != nil {
				return err
			}
		}
	}
	for _, s := range sets {
		if err := writeFiles(root, s); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, st.Mode().Perm())
}

// randomFiles makes n files named prefix000… with random contents of
// log-uniform sizes between lo and hi bytes.
func randomFiles(rng *rand.Rand, prefix string, n, lo, hi int) map[string]string {
	files := map[string]string{}
	for i := range n {
		size := int(float64(lo) * math.Pow(float64(hi)/float64(lo), rng.Float64()))
		buf := make([]byte, (size+7)/8*8)
		for j := 0; j < len(buf); j += 8 {
			binary.LittleEndian.PutUint64(buf[j:], rng.Uint64())
		}
		files[fmt.Sprintf("%s%03d", prefix, i)] = string(buf[:size])
	}
	return files
}

func merge(sets ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, s := range sets {
		for k, v := range s {
			out[k] = v
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

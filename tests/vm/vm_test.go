package vm

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cfs-storage/cfs-storage/tests/testutil"
)

// guestEnv is set (to 1) by the VM's /init for the guest tests.
const guestEnv = "CFS_VM_GUEST"

// vmTimeout bounds one boot of the VM, guest tests included.
const vmTimeout = 15 * time.Minute

// guestModules are the kernel modules the guest needs, with their
// dependencies found from the modules themselves; built-in ones are
// skipped.
var guestModules = []string{"virtio_blk", "ext4", "erofs", "overlay"}

// TestVerityVM boots Debian's 6.12 kernel (which has fs-verity) in QEMU
// and runs the TestGuest* tests there (see the package comment).
func TestVerityVM(t *testing.T) {
	if os.Getenv(guestEnv) != "" {
		t.Skip("the host side does not run inside the VM")
	}
	total := time.Now()
	repo := testutil.RepoRoot(t)
	cache := cacheDir()
	phase := time.Now()
	kdir := fetchKernel(t, repo, cache)
	qemu := testutil.RequireTool(t, "qemu-system-x86_64")
	busybox := staticBusybox(t)
	mkfs := testutil.RequireTool(t, "mkfs.ext4")
	t.Logf("kernel and tools ready in %v: %s", time.Since(phase).Round(time.Millisecond), kdir)

	work := t.TempDir()
	phase = time.Now()
	guest := buildGuest(t, work)
	t.Logf("guest test binary built in %v", time.Since(phase).Round(time.Millisecond))

	phase = time.Now()
	k := openKernel(t, kdir)
	mods := k.resolve(t, guestModules...)
	initrd := filepath.Join(work, "initrd.cpio")
	writeInitramfs(t, initrd, busybox, guest, k, mods)
	verityDisk := filepath.Join(work, "verity.img")
	plainDisk := filepath.Join(work, "plain.img")
	makeDisk(t, mkfs, verityDisk, "1G", "verity,^has_journal")
	makeDisk(t, mkfs, plainDisk, "512M", "^has_journal")
	t.Logf("initramfs (%d modules: %s) and disks made in %v", len(mods), strings.Join(mods, " "), time.Since(phase).Round(time.Millisecond))

	phase = time.Now()
	console, results, err := boot(t, qemu, k.vmlinuz(), initrd, work, verityDisk, plainDisk)
	t.Logf("VM ran for %v", time.Since(phase).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("VM: %v\n--- console (last 60 lines) ---\n%s\n--- guest output ---\n%s", err, tail(console, 60), results)
	}
	report(t, results, console)
	t.Logf("TestVerityVM took %v in all", time.Since(total).Round(time.Millisecond))
}

// cacheDir is where the kernel is kept between runs.
func cacheDir() string {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			home = os.TempDir()
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "cfs-storage", "vm")
}

// fetchKernel runs scripts/vm-kernel.sh (packages, kernel download) and
// returns the unpacked kernel's directory.
func fetchKernel(t *testing.T, repo, cache string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(repo, "scripts", "vm-kernel.sh"), cache)
	out, err := cmd.CombinedOutput()
	if err != nil {
		testutil.Unavailable(t, "cannot get QEMU or the 6.12 kernel package (scripts/vm-kernel.sh): %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dir, ok := strings.CutPrefix(lines[len(lines)-1], "kernel: ")
	if !ok {
		t.Fatalf("scripts/vm-kernel.sh printed no kernel directory:\n%s", out)
	}
	return dir
}

// staticBusybox returns busybox-static's binary.
func staticBusybox(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if isStatic(p) == nil {
			return p
		}
	}
	testutil.Unavailable(t, "needs a statically linked busybox (Debian's busybox-static)")
	return ""
}

// isStatic fails unless path is an ELF executable without an
// interpreter (statically linked).
func isStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", path)
		}
	}
	return nil
}

// buildGuest compiles this package's tests as a static binary.
func buildGuest(t *testing.T, work string) string {
	t.Helper()
	out := filepath.Join(work, "guest.test")
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	cmd := exec.Command(goBin, "test", "-c", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if !strings.Contains(os.Getenv("GOFLAGS"), "-tags") {
		cmd.Env = append(cmd.Env, "GOFLAGS=-tags=containers_image_openpgp,exclude_graphdriver_btrfs")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the guest test binary: %v\n%s", err, b)
	}
	if err := isStatic(out); err != nil {
		t.Fatalf("guest test binary: %v", err)
	}
	return out
}

// makeDisk makes an ext4 file system in a sparse image file.
func makeDisk(t *testing.T, mkfs, path, size, features string) {
	t.Helper()
	if b, err := exec.Command("truncate", "-s", size, path).CombinedOutput(); err != nil {
		t.Fatalf("truncate %s: %v\n%s", path, err, b)
	}
	// 4 KiB blocks (the tests write file blocks through the device), no
	// lazy initialisation left for the guest's slow CPU.
	cmd := exec.Command(mkfs, "-q", "-F", "-b", "4096", "-O", features,
		"-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard", path)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 %s: %v\n%s", path, err, b)
	}
}

// initScript is the guest's /init: mounts, modules, the disks, then the
// guest tests with their output on the second serial port.
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp /run /mnt/verity /mnt/plain
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
exec >/dev/ttyS1 2>&1
echo "CFS-VM: kernel $(uname -r)"
for m in $(cat /modules); do
	insmod /lib/modules/$m || echo "CFS-VM: insmod $m failed"
done
mount -t ext4 /dev/vda /mnt/verity || echo "CFS-VM: mount /dev/vda failed"
mount -t ext4 /dev/vdb /mnt/plain || echo "CFS-VM: mount /dev/vdb failed"
cd /tmp
CFS_VM_GUEST=1 /guest.test -test.v -test.timeout 12m -test.run '^TestGuest'
echo "CFS-VM: exit $?"
sync
poweroff -f
`

// boot runs the VM to its end and returns its console log and the guest
// tests' output.
func boot(t *testing.T, qemu, vmlinuz, initrd, work string, disks ...string) (console, results string, err error) {
	t.Helper()
	consoleLog := filepath.Join(work, "console.log")
	resultsLog := filepath.Join(work, "results.log")
	args := []string{
		"-accel", "tcg", "-m", "2G", "-smp", "2",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", vmlinuz, "-initrd", initrd,
		"-append", "console=ttyS0 loglevel=5 panic=-1",
		"-serial", "file:" + consoleLog, "-serial", "file:" + resultsLog,
	}
	for _, d := range disks {
		args = append(args, "-drive", "file="+d+",format=raw,if=virtio,cache=unsafe")
	}
	ctx, cancel := context.WithTimeout(context.Background(), vmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, args...)
	out, runErr := cmd.CombinedOutput()
	c, _ := os.ReadFile(consoleLog)
	r, _ := os.ReadFile(resultsLog)
	console, results = string(c), string(r)
	switch {
	case ctx.Err() != nil:
		return console, results, fmt.Errorf("no end after %v (killed)", vmTimeout)
	case runErr != nil:
		return console, results, fmt.Errorf("qemu: %v\n%s", runErr, out)
	}
	return console, results, nil
}

var (
	resultLine = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(([0-9.]+)s\)`)
	exitLine   = regexp.MustCompile(`^CFS-VM: exit (\d+)`)
	headerLine = regexp.MustCompile(`^=== (?:RUN|NAME|CONT|PAUSE)\s+(\S+)`)
)

// report turns each guest test's result into a subtest here (with the
// guest's log lines of that test), logs the guest's measurements and the
// kernel's fs-verity and overlay messages, and fails unless the guest
// tests ran to their end and passed.
func report(t *testing.T, results, console string) {
	t.Helper()
	logs := map[string][]string{} // guest test → its own output lines
	cur := ""
	exit := ""
	n := 0
	for _, line := range strings.Split(results, "\n") {
		if m := exitLine.FindStringSubmatch(line); m != nil {
			exit = m[1]
		}
		if strings.HasPrefix(line, "CFS-VM") {
			t.Log("guest: " + line)
			continue
		}
		if m := headerLine.FindStringSubmatch(line); m != nil {
			cur = m[1]
			continue
		}
		m := resultLine.FindStringSubmatch(line)
		if m == nil {
			if cur != "" && strings.TrimSpace(line) != "" {
				logs[cur] = append(logs[cur], line)
			}
			continue
		}
		n++
		status, name, secs := m[1], m[2], m[3]
		out := strings.Join(logs[name], "\n")
		t.Run(name, func(t *testing.T) {
			switch status {
			case "FAIL":
				t.Errorf("failed in the VM (%ss):\n%s", secs, out)
			case "SKIP":
				if testutil.InCI() {
					t.Errorf("skipped in the VM (CI=true: every guest test must run):\n%s", out)
				} else {
					t.Skipf("skipped in the VM:\n%s", out)
				}
			default:
				if out != "" {
					t.Logf("passed in the VM (%ss):\n%s", secs, out)
				} else {
					t.Logf("passed in the VM (%ss)", secs)
				}
			}
		})
	}
	var kernelLines []string
	for _, line := range strings.Split(console, "\n") {
		if strings.Contains(line, "verity") || strings.Contains(line, "overlayfs") || strings.Contains(line, "erofs") {
			kernelLines = append(kernelLines, strings.TrimSpace(line))
		}
	}
	if len(kernelLines) > 0 {
		t.Logf("the guest kernel said (fs-verity, overlayfs, erofs; %d lines):\n%s", len(kernelLines), tail(strings.Join(kernelLines, "\n"), 20))
	}
	switch {
	case exit == "":
		t.Errorf("the guest tests did not run to their end\n--- guest output ---\n%s\n--- console (last 40 lines) ---\n%s", results, tail(console, 40))
	case n == 0:
		t.Errorf("the guest ran no test\n%s", results)
	case exit != "0":
		t.Errorf("the guest tests exited %s", exit)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// kernel is an unpacked Debian kernel package.
type kernel struct {
	dir, release string
	builtin      map[string]bool   // modules built into the kernel
	files        map[string]string // module name → file under lib/modules/<release>
}

// openKernel reads the module lists of the kernel unpacked at dir.
func openKernel(t *testing.T, dir string) *kernel {
	t.Helper()
	rels, _ := filepath.Glob(filepath.Join(dir, "lib", "modules", "*"))
	if len(rels) != 1 {
		t.Fatalf("kernel %s: want one lib/modules/<release>, have %v", dir, rels)
	}
	k := &kernel{dir: dir, release: filepath.Base(rels[0]), builtin: map[string]bool{}, files: map[string]string{}}
	for _, list := range []string{"modules.builtin", "modules.order"} {
		data, err := os.ReadFile(filepath.Join(k.modDir(), list))
		if err != nil {
			t.Fatalf("kernel %s: %v", dir, err)
		}
		for _, rel := range strings.Fields(string(data)) {
			name := moduleName(rel)
			if list == "modules.builtin" {
				k.builtin[name] = true
				continue
			}
			for _, ext := range []string{"", ".xz", ".zst", ".gz"} {
				if _, err := os.Stat(filepath.Join(k.modDir(), rel+ext)); err == nil {
					k.files[name] = rel + ext
					break
				}
			}
		}
	}
	return k
}

func (k *kernel) modDir() string  { return filepath.Join(k.dir, "lib", "modules", k.release) }
func (k *kernel) vmlinuz() string { return filepath.Join(k.dir, "boot", "vmlinuz-"+k.release) }

// moduleName is a module's name from its path: base name without
// extensions, '-' as '_'.
func moduleName(rel string) string {
	base := filepath.Base(rel)
	base, _, _ = strings.Cut(base, ".ko")
	return strings.ReplaceAll(base, "-", "_")
}

// resolve returns the loadable modules that names need, each after its
// dependencies ("depends" and "softdep pre:" of its .modinfo), as file
// names under the initramfs's /lib/modules (decompressed there).
func (k *kernel) resolve(t *testing.T, names ...string) []string {
	t.Helper()
	var order []string
	seen := map[string]bool{}
	var visit func(name string, soft bool)
	visit = func(name string, soft bool) {
		name = strings.ReplaceAll(name, "-", "_")
		if seen[name] || k.builtin[name] {
			return
		}
		seen[name] = true
		if _, ok := k.files[name]; !ok {
			if soft {
				return
			}
			t.Fatalf("kernel %s: no module %s", k.release, name)
		}
		info := k.modinfo(t, name)
		for _, dep := range strings.Split(info["depends"], ",") {
			if dep != "" {
				visit(dep, false)
			}
		}
		for _, dep := range softPre(info["softdep"]) {
			visit(dep, true)
		}
		order = append(order, name)
	}
	for _, n := range names {
		visit(n, false)
	}
	return order
}

// softPre returns the "pre:" modules of a softdep value.
func softPre(v string) []string {
	var pre []string
	in := false
	for _, f := range strings.Fields(v) {
		switch f {
		case "pre:":
			in = true
		case "post:":
			in = false
		default:
			if in {
				pre = append(pre, f)
			}
		}
	}
	return pre
}

// moduleData returns a module's ELF file, decompressed.
func (k *kernel) moduleData(t *testing.T, name string) []byte {
	t.Helper()
	path := filepath.Join(k.modDir(), k.files[name])
	var cmd *exec.Cmd
	switch filepath.Ext(path) {
	case ".ko":
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return data
	case ".xz":
		cmd = exec.Command("xz", "-dc", path)
	case ".zst":
		cmd = exec.Command("zstd", "-dc", path)
	case ".gz":
		cmd = exec.Command("gzip", "-dc", path)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	data, err := cmd.Output()
	if err != nil {
		t.Fatalf("decompress %s: %v\n%s", path, err, stderr.String())
	}
	return data
}

// modinfo reads the key=value pairs of a module's .modinfo section (the
// last value of a repeated key).
func (k *kernel) modinfo(t *testing.T, name string) map[string]string {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(k.moduleData(t, name)))
	if err != nil {
		t.Fatalf("module %s: %v", name, err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		t.Fatalf("module %s: no .modinfo section", name)
	}
	data, err := sec.Data()
	if err != nil {
		t.Fatalf("module %s: %v", name, err)
	}
	info := map[string]string{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if key, val, ok := strings.Cut(string(kv), "="); ok {
			if key == "softdep" && info[key] != "" {
				val = info[key] + " " + val
			}
			info[key] = val
		}
	}
	return info
}

// writeInitramfs writes the guest's initramfs (an uncompressed newc
// cpio archive): /init, busybox, the guest test binary, the modules
// (decompressed, numbered in load order) and /modules listing them.
func writeInitramfs(t *testing.T, path, busybox, guest string, k *kernel, mods []string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &cpioWriter{w: bufio.NewWriterSize(f, 1<<20)}
	for _, d := range []string{"bin", "lib", "lib/modules"} {
		w.dir(d)
	}
	w.file("init", 0o755, []byte(initScript))
	for _, src := range []struct{ name, path string }{{"bin/busybox", busybox}, {"guest.test", guest}} {
		data, err := os.ReadFile(src.path)
		if err != nil {
			t.Fatal(err)
		}
		w.file(src.name, 0o755, data)
	}
	var list []string
	for i, m := range mods {
		name := fmt.Sprintf("%02d-%s.ko", i, m)
		w.file("lib/modules/"+name, 0o644, k.moduleData(t, m))
		list = append(list, name)
	}
	sort.Strings(list)
	w.file("modules", 0o644, []byte(strings.Join(list, "\n")+"\n"))
	w.trailer()
	if err := errors.Join(w.err, w.w.Flush(), f.Close()); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

// cpioWriter writes a newc ("070701") cpio archive, as the kernel
// unpacks an initramfs.
type cpioWriter struct {
	w   *bufio.Writer
	ino int
	err error
}

func (c *cpioWriter) entry(name string, mode uint32, data []byte) {
	c.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	c.write([]byte(hdr + name + "\x00"))
	c.pad(len(hdr) + len(name) + 1)
	c.write(data)
	c.pad(len(data))
}

func (c *cpioWriter) write(b []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(b)
	}
}

func (c *cpioWriter) pad(n int) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) dir(name string)                         { c.entry(name, 0o040755, nil) }
func (c *cpioWriter) file(name string, perm uint32, b []byte) { c.entry(name, 0o100000|perm, b) }
func (c *cpioWriter) trailer()                                { c.entry("TRAILER!!!", 0, nil) }

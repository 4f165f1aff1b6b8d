package scenario

import (
	"bufio"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cfs-storage/cfs-storage/cmd/cfs-storage-bench/internal/report"
)

// machineInfo describes this machine for the report.
func machineInfo() report.Machine {
	m := report.Machine{CPUs: goruntime.NumCPU(), Runtime: "none (no start measured)"}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	m.OS = keyValue("/etc/os-release", "PRETTY_NAME", "=")
	m.CPU = keyValue("/proc/cpuinfo", "model name", ":")
	if kb, err := strconv.ParseInt(strings.Fields(keyValue("/proc/meminfo", "MemTotal", ":") + " 0")[0], 10, 64); err == nil {
		m.MemBytes = kb << 10
	}
	return m
}

// keyValue returns the first value of key in a "key<sep>value" file.
func keyValue(path, key, sep string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), sep)
		if ok && strings.TrimSpace(k) == key {
			return strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return ""
}

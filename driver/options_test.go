package driver

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writeConf(t *testing.T, body string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "storage.conf")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CONTAINERS_STORAGE_CONF", p)
}

func TestOptionsFromStorageConfAndOverrides(t *testing.T) {
	writeConf(t, `[storage]
driver = "cfs"
[storage.options.cfs]
inline_threshold = 128
host_repo = "/srv/repo"
verity = "auto"
`)
	o, err := ParseOptions([]string{"cfs.verity=none", "host_link=copy", "mountopt=nodev,noatime"})
	if err != nil {
		t.Fatal(err)
	}
	if o.InlineThreshold != 128 || o.HostRepo != "/srv/repo" {
		t.Errorf("storage.conf values not applied: %+v", o)
	}
	if o.Verity != "none" || o.HostLink != "copy" {
		t.Errorf("driver options did not override storage.conf: %+v", o)
	}
	if !slices.Equal(o.MountOpts, []string{"nodev", "noatime"}) {
		t.Errorf("mountopt = %v", o.MountOpts)
	}
}

func TestOptionsRejected(t *testing.T) {
	writeConf(t, "[storage]\ndriver = \"cfs\"\n")
	for opt, want := range map[string]string{
		"cfs.nonsense=1":         "unknown option",
		"inline_threshold=lots":  "byte count",
		"inline_threshold=99999": "byte count",
		"cfs.verity=sometimes":   "none, auto or require",
		"host_link=teleport":     "auto, hardlink",
		"size=10G":               "not supported",
		"no-equals-sign":         "KEY=VALUE",
	} {
		_, err := ParseOptions([]string{opt})
		if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want ErrInvalidOption mentioning %q", opt, err, want)
		}
	}
	writeConf(t, "[storage.options.cfs]\nverity = \"maybe\"\n")
	if _, err := ParseOptions(nil); err == nil || !strings.Contains(err.Error(), "storage.conf") {
		t.Errorf("bad storage.conf value: err = %v, want it to name storage.conf", err)
	}
}

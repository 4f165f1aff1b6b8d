package runtime

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	imgspecv1 "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	hybridInfo = `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	v2Info = `22 1 0:20 / / rw - ext4 /dev/sda1 rw
35 25 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
`
	v1Info = `31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
`
)

func TestParseCgroupLayout(t *testing.T) {
	for _, tc := range []struct {
		name, info string
		want       CgroupLayout
	}{
		{"hybrid", hybridInfo, CgroupHybrid},
		{"v2", v2Info, CgroupV2},
		{"v1", v1Info, CgroupV1},
		{"none", "22 1 0:20 / / rw - ext4 /dev/sda1 rw\n", CgroupUnknown},
	} {
		got, err := ParseCgroupLayout(strings.NewReader(tc.info))
		if err != nil || got != tc.want {
			t.Errorf("%s: got %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
	if got, err := ParseCgroupLayout(strings.NewReader("not a mountinfo line\n")); err == nil {
		t.Errorf("garbage: got %v, no error", got)
	}
}

func TestSpecFromImageConfig(t *testing.T) {
	rootfs := t.TempDir()
	os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(rootfs, "etc/group"), []byte("root:x:0:\nstaff:x:50:app\n"), 0o644)
	cfg := &imgspecv1.ImageConfig{Entrypoint: []string{"/bin/ep"}, Cmd: []string{"a", "b"}, Env: []string{"X=1"}, WorkingDir: "/w", User: "app"}

	s, err := Spec(cfg, SpecOptions{Rootfs: rootfs, Hostname: "h"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/bin/ep", "a", "b"}; !slices.Equal(s.Process.Args, want) {
		t.Errorf("args %v, want %v", s.Process.Args, want)
	}
	if s.Process.Cwd != "/w" || s.Process.User.UID != 1000 || s.Process.User.GID != 1001 || s.Root.Path != rootfs || s.Root.Readonly {
		t.Errorf("cwd %q user %+v root %+v", s.Process.Cwd, s.Process.User, s.Root)
	}
	if !slices.Contains(s.Process.Env, DefaultPath) || !slices.Contains(s.Process.Env, "X=1") || !slices.Contains(s.Process.Env, "HOSTNAME=h") {
		t.Errorf("env %v", s.Process.Env)
	}
	if s.Version != SpecVersion || s.Linux.Resources == nil {
		t.Errorf("version %q resources %v", s.Version, s.Linux.Resources)
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == "network" || ns.Type == "cgroup" {
			t.Errorf("unexpected %s namespace", ns.Type)
		}
	}

	cfg.User = "1000:staff"
	s, err = Spec(cfg, SpecOptions{Rootfs: rootfs, Command: []string{"c"}, NoCgroups: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/bin/ep", "c"}; !slices.Equal(s.Process.Args, want) || s.Process.User.GID != 50 || s.Linux.Resources != nil {
		t.Errorf("override: args %v user %+v resources %v", s.Process.Args, s.Process.User, s.Linux.Resources)
	}
	cfg.User = "4242"
	if s, err = Spec(cfg, SpecOptions{Rootfs: rootfs}); err != nil || s.Process.User.UID != 4242 || s.Process.User.GID != 0 {
		t.Errorf("numeric user not in passwd: %+v, %v", s.Process.User, err)
	}
	cfg.User = "nobody"
	if _, err := Spec(cfg, SpecOptions{Rootfs: rootfs}); err == nil || !strings.Contains(err.Error(), "nobody") {
		t.Errorf("unknown user: %v", err)
	}
	if _, err := Spec(&imgspecv1.ImageConfig{}, SpecOptions{Rootfs: rootfs}); err == nil || !strings.Contains(err.Error(), "no command") {
		t.Errorf("no command: %v", err)
	}
}

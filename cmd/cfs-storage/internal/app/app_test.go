package app

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestMainDispatchAndExitCodes(t *testing.T) {
	var got []string
	cmds := []Command{
		{Name: "ok", Run: func(ctx context.Context, g *Globals, args []string) error {
			got = append([]string{g.Root, g.Driver}, append(g.StorageOpts, args...)...)
			return nil
		}},
		{Name: "fail", Run: func(context.Context, *Globals, []string) error { return errors.New("boom") }},
		{Name: "exit7", Run: func(context.Context, *Globals, []string) error { return ExitError{Code: 7} }},
	}
	var stdout, stderr bytes.Buffer
	args := []string{"--root", "/r", "--storage-driver", "vfs", "--storage-opt", "a=1", "--storage-opt", "b=2", "ok", "x", "--y"}
	if code := Main(context.Background(), args, cmds, &stdout, &stderr); code != 0 {
		t.Fatalf("ok: exit %d: %s", code, stderr.String())
	}
	if want := []string{"/r", "vfs", "a=1", "b=2", "x", "--y"}; !slices.Equal(got, want) {
		t.Errorf("command saw %v, want %v", got, want)
	}
	if code := Main(context.Background(), []string{"fail"}, cmds, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "Error: boom") {
		t.Errorf("fail: exit %d, stderr %q", code, stderr.String())
	}
	if code := Main(context.Background(), []string{"exit7"}, cmds, &stdout, &stderr); code != 7 {
		t.Errorf("exit7: exit %d", code)
	}
	if code := Main(context.Background(), []string{"nope"}, cmds, &stdout, &stderr); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
}

func TestStoreOptionsFromConfAndFlags(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "storage.conf")
	os.WriteFile(conf, []byte("[storage]\ndriver = \"cfs\"\ngraphroot = \"/conf/root\"\nrunroot = \"/conf/run\"\n"), 0o644)
	t.Setenv("CONTAINERS_STORAGE_CONF", conf)
	g := &Globals{}
	opts, err := g.StoreOptions()
	if err != nil {
		t.Fatal(err)
	}
	if opts.GraphDriverName != "cfs" || opts.GraphRoot != "/conf/root" || opts.RunRoot != "/conf/run" {
		t.Fatalf("storage.conf not honoured: %+v", opts)
	}
	g = &Globals{Root: "/flag/root", Driver: "overlay", StorageOpts: []string{"overlay.mountopt=nodev"}}
	opts, err = g.StoreOptions()
	if err != nil {
		t.Fatal(err)
	}
	if opts.GraphDriverName != "overlay" || opts.GraphRoot != "/flag/root" || opts.RunRoot != "/conf/run" || !slices.Equal(opts.GraphDriverOptions, []string{"overlay.mountopt=nodev"}) {
		t.Fatalf("flags did not override storage.conf: %+v", opts)
	}
}

// TestStoreOptionsKeepOtherDriversOptions: without --storage-driver every
// option storage.conf makes goes to the driver, as in podman (the cfs
// driver skips overlay's); --storage-driver drops them, as podman does.
func TestStoreOptionsKeepOtherDriversOptions(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "storage.conf")
	os.WriteFile(conf, []byte("[storage]\ndriver = \"cfs\"\ngraphroot = \"/conf/root\"\nrunroot = \"/conf/run\"\n[storage.options.overlay]\nmountopt = \"nodev,metacopy=on\"\n"), 0o644)
	t.Setenv("CONTAINERS_STORAGE_CONF", conf)
	t.Setenv("STORAGE_OPTS", "")
	os.Unsetenv("STORAGE_OPTS")
	opts, err := (&Globals{}).StoreOptions()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(opts.GraphDriverOptions, []string{"overlay.mountopt=nodev,metacopy=on"}) {
		t.Errorf("storage.conf's driver options: %q", opts.GraphDriverOptions)
	}
	for _, driver := range []string{"cfs", "vfs"} {
		opts, err := (&Globals{Driver: driver}).StoreOptions()
		if err != nil {
			t.Fatal(err)
		}
		if opts.GraphDriverName != driver || len(opts.GraphDriverOptions) != 0 {
			t.Errorf("--storage-driver %s: driver %q, options %q (podman drops storage.conf's)", driver, opts.GraphDriverName, opts.GraphDriverOptions)
		}
	}
}

// TestStoreOptionsPartialPullRepo: on cfs the driver's partial-pull
// repository is added to the ostree_repos storage.conf gives (empty, as
// distributions ship it, or naming other repositories), never twice.
func TestStoreOptionsPartialPullRepo(t *testing.T) {
	for _, tc := range []struct{ conf, want string }{
		{"", "/conf/root/cfs/partial-pull-repo"},
		{"[storage.options]\npull_options = {enable_partial_images = \"true\", ostree_repos = \"\"}\n", "/conf/root/cfs/partial-pull-repo"},
		{"[storage.options.pull_options]\nostree_repos = \"/sysroot/ostree/repo:/conf/root/cfs/partial-pull-repo\"\n", "/sysroot/ostree/repo:/conf/root/cfs/partial-pull-repo"},
	} {
		conf := filepath.Join(t.TempDir(), "storage.conf")
		os.WriteFile(conf, []byte("[storage]\ndriver = \"cfs\"\ngraphroot = \"/conf/root\"\nrunroot = \"/conf/run\"\n"+tc.conf), 0o644)
		t.Setenv("CONTAINERS_STORAGE_CONF", conf)
		opts, err := (&Globals{}).StoreOptions()
		if err != nil {
			t.Fatal(err)
		}
		if got := opts.PullOptions["ostree_repos"]; got != tc.want {
			t.Errorf("storage.conf %q: ostree_repos %q, want %q", tc.conf, got, tc.want)
		}
	}
	conf := filepath.Join(t.TempDir(), "storage.conf")
	os.WriteFile(conf, []byte("[storage]\ndriver = \"overlay\"\ngraphroot = \"/conf/root\"\nrunroot = \"/conf/run\"\n"), 0o644)
	t.Setenv("CONTAINERS_STORAGE_CONF", conf)
	if opts, err := (&Globals{}).StoreOptions(); err != nil || opts.PullOptions["ostree_repos"] != "" {
		t.Errorf("overlay: ostree_repos %q (%v)", opts.PullOptions["ostree_repos"], err)
	}
}

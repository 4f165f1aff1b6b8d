# cfs-storage: `make bench` runs the main job, `make test` the whole suite.
# Both install what they need first (Debian packages, Go modules) and are
# quick when everything is already there. Run them as root.

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
# go.podman.io/storage and go.podman.io/image build without extra C
# libraries with these tags; every go command here uses them.
TAGS := containers_image_openpgp,exclude_graphdriver_btrfs
export GOFLAGS := -tags=$(TAGS)

# Debian packages the tests and the benchmark use.
APT_PACKAGES := ostree crun runc debootstrap xfsprogs attr erofs-utils fsverity \
	e2fsprogs util-linux docker-registry bats jq \
	conmon netavark busybox-static libseccomp-dev libsqlite3-dev gcc libc6-dev pkg-config
# The fs-verity test (tests/vm) boots Debian's 6.12 kernel in QEMU; its
# scripts/vm-kernel.sh fetches the kernel package.
APT_PACKAGES += qemu-system-x86 busybox-static xz-utils

BIN := bin

.PHONY: all deps build test bench vet clean podman cstorage-suite

all: build

deps:
	@scripts/install-deps.sh $(APT_PACKAGES)
	@$(GO) mod download

build: deps
	$(GO) build -o $(BIN)/ ./cmd/...

vet: deps
	$(GO) vet ./...

test: vet
	@scripts/build-podman.sh || echo "make test: no bin/podman (TestPodman says why)"
	@scripts/run-tests.sh

# bin/podman with the cfs driver vendored in, from PODMAN_SRC (default
# ../shared/podman/podman-src.tar.xz): scripts/build-podman.sh, quick when
# nothing changed. make test builds it first; tests/podman_test.go uses it.
podman: deps
	@scripts/build-podman.sh

# containers/storage's own integration suite (tests/*.bats of
# go.podman.io/storage) on the cfs driver, alone (make test runs it too).
# SUITE_ARGS="--driver overlay" for comparison, or a few FILE.bats.
cstorage-suite: deps
	@scripts/cstorage-suite.sh $(SUITE_ARGS)

# The main job: the benchmark on its default corpus (built on the first
# run with debootstrap from deb.debian.org, then cached under
# ~/.cache/cfs-storage-bench), on cfs, cfs without host deduplication,
# overlay and vfs. Table on stdout, report in bench-out/.
bench: build
	$(BIN)/cfs-storage-bench --out bench-out

clean:
	rm -rf $(BIN)

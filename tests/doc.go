// Package tests holds the privileged end-to-end suites: real EROFS and
// overlayfs mounts, real ostree repositories, real OCI images and real
// container runtimes. Shared helpers are in tests/testutil.
//
// The suites need root. Outside CI they skip with a message when not
// root; with CI=true they fail instead.
package tests

// Package images implements the image commands of cfs-storage: pull,
// push, save, images and rmi. They move images with go.podman.io/image's
// copy.Image between c/image transports and the containers-storage
// store opened from the global flags, exactly as podman does.
package images

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/signature"
	istorage "go.podman.io/image/v5/storage"
	"go.podman.io/image/v5/transports/alltransports"
	"go.podman.io/image/v5/types"
	storage "go.podman.io/storage"
)

// PolicyHelp explains the signature policy in the commands' --help.
const PolicyHelp = "Signatures are not verified: the commands use a built-in policy that accepts any image (insecureAcceptAnything), so no /etc/containers/policy.json is needed."

// policyContext returns a policy context accepting any image. The
// caller destroys it.
func policyContext() (*signature.PolicyContext, error) {
	policy := &signature.Policy{Default: signature.PolicyRequirements{signature.NewPRInsecureAcceptAnything()}}
	pc, err := signature.NewPolicyContext(policy)
	if err != nil {
		return nil, fmt.Errorf("set up the signature policy: %w", err)
	}
	return pc, nil
}

// TransportOptions are the flags shared by commands that reach a
// registry or another transport.
type TransportOptions struct {
	// TLSVerify is false for --tls-verify=false (a local registry over
	// plain HTTP or with a self-signed certificate).
	TLSVerify bool
	// CertDir and AuthFile as podman spells them; empty for defaults.
	CertDir  string
	AuthFile string
}

// systemContext returns the c/image system context for o.
func (o TransportOptions) systemContext() *types.SystemContext {
	sys := &types.SystemContext{
		DockerCertPath: o.CertDir,
		AuthFilePath:   o.AuthFile,
	}
	if !o.TLSVerify {
		sys.DockerInsecureSkipTLSVerify = types.OptionalBoolTrue
		sys.OCIInsecureSkipTLSVerify = true
	}
	return sys
}

// parseTransportRef parses a c/image transport reference
// (oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker://REF,
// dir:DIR) and explains the syntax when it does not parse.
func parseTransportRef(s string) (types.ImageReference, error) {
	ref, err := alltransports.ParseImageName(s)
	if err != nil {
		return nil, fmt.Errorf("parse image reference %q: %w (use TRANSPORT:DETAILS, e.g. oci:/path/to/layout:tag, oci-archive:/path/file.tar, docker-archive:/path/file.tar or docker://registry/repo:tag)", s, err)
	}
	return ref, nil
}

// storeName returns the name an image copied from src gets in
// containers-storage: the docker reference for docker:// (and archives
// that carry one), else localhost/<basename>:<tag or latest>, the way
// podman names images from oci: and archive transports.
func storeName(src types.ImageReference) (string, error) {
	if named := src.DockerReference(); named != nil {
		return reference.TagNameOnly(named).String(), nil
	}
	within := src.StringWithinTransport()
	path, tag := within, ""
	if name := src.Transport().Name(); name == "oci" || name == "oci-archive" {
		// PATH:REF, split at the first colon as c/image does on Linux.
		path, tag, _ = strings.Cut(within, ":")
		if i := strings.LastIndex(tag, ":"); i >= 0 {
			tag = tag[i+1:] // a REF like localhost/name:tag
		}
	}
	base := strings.ToLower(filepath.Base(strings.TrimSuffix(path, "/")))
	base = strings.TrimSuffix(strings.TrimSuffix(base, ".tar"), ".oci")
	base = sanitizeRepo(base)
	if tag == "" {
		tag = "latest"
	}
	named, err := reference.ParseNormalizedNamed("localhost/" + base + ":" + tag)
	if err != nil {
		return "", fmt.Errorf("derive an image name from %q: %w (give the image a tag in the source)", transportsName(src), err)
	}
	return named.String(), nil
}

// sanitizeRepo keeps the characters a repository name may hold.
func sanitizeRepo(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
	}
	out := strings.Trim(b.String(), ".-_")
	if out == "" {
		return "image"
	}
	return out
}

func transportsName(ref types.ImageReference) string {
	return ref.Transport().Name() + ":" + ref.StringWithinTransport()
}

// storeRef returns the containers-storage reference of image img.
func storeRef(store storage.Store, img *storage.Image) (types.ImageReference, error) {
	ref, err := istorage.Transport.NewStoreReference(store, nil, img.ID)
	if err != nil {
		return nil, fmt.Errorf("reference image %s in containers-storage: %w", shortID(img.ID), err)
	}
	return ref, nil
}

// reportWriter is where copy progress goes: stderr, unless quiet.
// c/image draws one bar per blob when the writer is a terminal and
// prints one "Copying blob" line per blob otherwise, as podman does.
func reportWriter(stderr io.Writer, quiet bool) io.Writer {
	if quiet {
		return nil
	}
	return stderr
}

// shortID is the 12-character ID podman prints.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

package images

import (
	"fmt"
	"strings"
)

// withHint adds what to do to the c/image errors users meet most.
func withHint(err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"),
		strings.Contains(msg, "x509: certificate"), strings.Contains(msg, "tls: failed to verify"):
		return fmt.Errorf("%w (for a local registry without TLS or with a self-signed certificate, add --tls-verify=false)", err)
	case strings.Contains(msg, "index.json: no such file"):
		return fmt.Errorf("%w (oci: needs an OCI image layout directory: oci:DIR[:TAG])", err)
	case strings.Contains(msg, "requested access to the resource is denied"), strings.Contains(msg, "unauthorized"):
		return fmt.Errorf("%w (log in with `podman login` or pass --authfile)", err)
	}
	return err
}

package images

import "flag"

// addFlags registers the transport flags in podman's spelling.
func (o *TransportOptions) addFlags(fs *flag.FlagSet) {
	fs.BoolVar(&o.TLSVerify, "tls-verify", true, "require HTTPS and verify certificates when talking to a registry")
	fs.StringVar(&o.CertDir, "cert-dir", "", "directory of certificates (*.crt, *.cert, *.key) for the registry")
	fs.StringVar(&o.AuthFile, "authfile", "", "path of the registry authentication file")
}

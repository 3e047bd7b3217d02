package server

import (
	"context"
	"crypto/x509"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// CertIdentities maps verified TLS client certificates to principals: a
// SPIFFE ID (a spiffe:// URI SAN) or, failing that, the subject's common
// name. Only certificates that verified against the gRPC listener's client
// CAs count; the mapping is configuration (cofferd's mtls.identities),
// not state, so a certificate can name a principal only where an operator
// said it may.
type CertIdentities struct {
	// BySPIFFEID maps a SPIFFE ID (spiffe://trust-domain/path) to a
	// principal name.
	BySPIFFEID map[string]string
	// BySubjectCN maps a certificate subject common name to a principal name.
	BySubjectCN map[string]string
}

// Principal returns the principal a verified leaf certificate maps to. A
// mapping to a reserved name (root, anonymous) maps nothing: cofferd's
// config validation refuses one, and a programmatic one is ignored too,
// since it would give the certificate's holder full access.
func (c *CertIdentities) Principal(cert *x509.Certificate) (string, bool) {
	name, ok := c.mapped(cert)
	if !ok || ReservedPrincipal(name) {
		return "", false
	}
	return name, true
}

func (c *CertIdentities) mapped(cert *x509.Certificate) (string, bool) {
	if c == nil || cert == nil {
		return "", false
	}
	for _, u := range cert.URIs {
		if u.Scheme != "spiffe" {
			continue
		}
		if name, ok := c.BySPIFFEID[u.String()]; ok {
			return name, true
		}
	}
	if cn := cert.Subject.CommonName; cn != "" {
		if name, ok := c.BySubjectCN[cn]; ok {
			return name, true
		}
	}
	return "", false
}

// FromPeer returns the principal of the call's verified client
// certificate, if the connection has one that maps to a principal.
func (c *CertIdentities) FromPeer(ctx context.Context) (string, bool) {
	if c == nil {
		return "", false
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	// VerifiedChains is empty unless the certificate verified against the
	// configured client CAs; an unverified certificate identifies no one.
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.PeerCertificates) == 0 {
		return "", false
	}
	return c.Principal(info.State.PeerCertificates[0])
}

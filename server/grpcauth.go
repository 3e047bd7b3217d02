package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/server/sigv4"
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
)

// DefaultGRPCMaxSkew is how far a signed gRPC call's x-amz-date may be from
// the node's clock, either way: the window in which a captured call could
// be replayed unchanged. Shorter than the AWS API's 15 minutes, because
// Coffer's own clients sign each call just before sending it.
const DefaultGRPCMaxSkew = 5 * time.Minute

// GRPCAuthConfig configures NewGRPCAuth.
type GRPCAuthConfig struct {
	// IAM looks up access keys; it is required.
	IAM *IAM
	// Certs maps verified TLS client certificates to principals; nil maps
	// none.
	Certs *CertIdentities
	// AllowAnonymous (cofferd dev only) lets calls with neither a
	// signature, a bearer token nor a certificate through as
	// AnonymousPrincipal.
	AllowAnonymous bool
	// Region is this node's region: the one a credential scope must name.
	Region string
	// MaxSkew bounds the age of a signature; 0 means DefaultGRPCMaxSkew.
	MaxSkew time.Duration
	// Now is the clock signatures are judged by; nil means the IAM
	// service's clock, which also judges session expiry.
	Now func() time.Time
	// Log receives the deprecation warning for bearer tokens; nil means
	// slog.Default().
	Log *slog.Logger
}

// grpcAuth authenticates gRPC calls; see NewGRPCAuth.
type grpcAuth struct {
	cfg      GRPCAuthConfig
	verifier *sigv4.Verifier
	log      *slog.Logger

	mu     sync.Mutex
	warned map[string]bool // access key ids already warned about bearer use
}

// maxBearerWarned bounds the set of access key ids warned about; past it,
// the set starts over (a key may then be warned about again).
const maxBearerWarned = 10000

// NewGRPCAuth authenticates gRPC calls, in this order:
//   - a SigV4 signature over the call (server/sigv4/grpcsig): method, authority,
//     x-amz-date within MaxSkew, session token, message hash, scoped to this
//     region and the "coffer" service — what the coffer CLI and grpcsig send;
//   - deprecated, for one release: "authorization: Bearer
//     ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]", accepted only over TLS
//     or from a loopback address, where no one on the path can read it, and
//     logged once per access key id;
//   - without an authorization header, a verified TLS client certificate
//     that Certs maps to a principal, or, with AllowAnonymous, the anonymous
//     caller.
func NewGRPCAuth(cfg GRPCAuthConfig) GRPCAuth {
	a := &grpcAuth{cfg: cfg, log: cfg.Log, warned: map[string]bool{}}
	if a.log == nil {
		a.log = slog.Default()
	}
	skew := cfg.MaxSkew
	if skew <= 0 {
		skew = DefaultGRPCMaxSkew
	}
	now := cfg.Now
	if now == nil {
		now = cfg.IAM.svc.now
	}
	a.verifier = &sigv4.Verifier{Service: grpcsig.Service, MaxSkew: skew, Now: now, Lookup: cfg.IAM.SigV4Lookup}
	return a.authenticate
}

func (a *grpcAuth) authenticate(ctx context.Context, fullMethod string, req proto.Message) (Identity, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	v := first(md, "authorization")
	switch {
	case v == "":
		if name, ok := a.cfg.Certs.FromPeer(ctx); ok {
			return Identity{Principal: name}, nil
		}
		if a.cfg.AllowAnonymous {
			return Identity{Principal: AnonymousPrincipal}, nil
		}
		return Identity{}, apiErr(TypeMissingAuthToken, "Request is missing Authentication Token: sign each call with SigV4 (the coffer CLI and server/sigv4/grpcsig do).")
	case grpcsig.Signed(md):
		return a.signed(ctx, md, fullMethod, req)
	}
	scheme, token, _ := strings.Cut(v, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return Identity{}, apiErr(TypeIncompleteSignature, "The authorization header must be a SigV4 signature (%s Credential=…, SignedHeaders=…, Signature=…).", sigv4.Algorithm)
	}
	if !privateTransport(ctx) {
		return Identity{}, apiErr(TypeIncompleteSignature,
			"Bearer credentials are accepted only over TLS or from a loopback address, and are deprecated: sign each call with SigV4 (the coffer CLI does), over TLS.")
	}
	id, err := a.cfg.IAM.CheckBearer(ctx, strings.TrimSpace(token))
	if err == nil {
		a.warnBearer(id.AccessKeyID)
	}
	return id, err
}

// signed verifies a SigV4-signed call and judges its credentials' expiry
// after the signature, so only the holder of the secret learns that they
// are merely expired.
func (a *grpcAuth) signed(ctx context.Context, md metadata.MD, fullMethod string, req proto.Message) (Identity, error) {
	creds, region, err := grpcsig.Verify(ctx, a.verifier, md, fullMethod, req)
	if err != nil {
		var se *sigv4.Error
		if errors.As(err, &se) {
			return Identity{}, &APIError{Type: se.Code, Message: se.Message}
		}
		return Identity{}, err
	}
	if region != a.cfg.Region {
		return Identity{}, &APIError{Type: TypeInvalidSignature,
			Message: fmt.Sprintf("Credential should be scoped to a valid region. This endpoint serves %s, not '%s'.", a.cfg.Region, region)}
	}
	k, err := a.cfg.IAM.LookupKey(ctx, creds.AccessKeyID)
	if err != nil {
		return Identity{}, err
	}
	if a.cfg.IAM.Expired(k) {
		return Identity{}, errExpiredToken()
	}
	return Identity{Principal: creds.Principal, AccessKeyID: creds.AccessKeyID, Session: !k.Expiration.IsZero()}, nil
}

func (a *grpcAuth) warnBearer(accessKeyID string) {
	a.mu.Lock()
	seen := a.warned[accessKeyID]
	if !seen {
		if len(a.warned) >= maxBearerWarned {
			clear(a.warned)
		}
		a.warned[accessKeyID] = true
	}
	a.mu.Unlock()
	if !seen {
		a.log.Warn("a gRPC client authenticated with a bearer access key, which is deprecated and will be refused in the next release: sign calls with SigV4 (the coffer CLI does; Go clients use server/sigv4/grpcsig)",
			"access_key_id", accessKeyID)
	}
}

// privateTransport reports whether the call came over TLS or from a
// loopback address: the only places a bearer secret may still travel.
func privateTransport(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return false
	}
	if _, ok := p.AuthInfo.(credentials.TLSInfo); ok {
		return true
	}
	if p.Addr == nil {
		return false
	}
	ip := net.ParseIP(hostOf(p.Addr.String()))
	return ip != nil && ip.IsLoopback()
}

// SigV4Lookup finds the credentials of an access key for a SigV4 verifier:
// (nil, nil) for an unknown key. Both the AWS API and signed gRPC calls
// look keys up with it.
func (i *IAM) SigV4Lookup(ctx context.Context, id string) (*sigv4.Credentials, error) {
	k, err := i.LookupKey(ctx, id)
	if errors.Is(err, ErrUnknownAccessKey) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return k.SigV4(id), nil
}

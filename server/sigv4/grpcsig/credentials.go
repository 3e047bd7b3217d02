package grpcsig

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/server/sigv4"
)

// Credentials sign every gRPC call with an access key (SigV4 over the call's
// metadata). Use DialOptions: the credentials alone sign each call with
// UNSIGNED-PAYLOAD, and the interceptors add the request message's hash and
// learn the region. The zero value of every field but the key is usable.
//
//	creds := &grpcsig.Credentials{AccessKeyID: id, SecretAccessKey: secret}
//	conn, err := grpc.NewClient(addr, append(creds.DialOptions(), grpc.WithTransportCredentials(tlsCreds))...)
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	// SessionToken accompanies temporary credentials.
	SessionToken string
	// Region scopes the signatures; it must be the region of the node
	// called. Empty: the interceptors learn it before the first call from
	// the node's RegionHeader (one health check), else DefaultRegion.
	Region string
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu      sync.Mutex
	learned string
}

var _ credentials.PerRPCCredentials = (*Credentials)(nil)

// DialOptions are the dial options that sign every call with c: the
// per-RPC credentials and the unary and stream interceptors that hash the
// request message and learn the region.
func (c *Credentials) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithPerRPCCredentials(c),
		grpc.WithChainUnaryInterceptor(c.unary),
		grpc.WithChainStreamInterceptor(c.stream),
	}
}

// RequireTransportSecurity is false: a signature is no reusable secret, and
// whether plaintext is acceptable (loopback, a test) is the caller's choice.
func (c *Credentials) RequireTransportSecurity() bool { return false }

type signingKey struct{}

// signing is what the interceptors pass to GetRequestMetadata through the
// call's context: the region, and the message's encoding and its hash.
type signing struct {
	region, payloadHash string
	body                []byte
}

// GetRequestMetadata signs one call: the method and authority come from
// gRPC, the region and payload hash from the interceptors (or, without
// them, Region or DefaultRegion, and UNSIGNED-PAYLOAD).
func (c *Credentials) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	ri, _ := credentials.RequestInfoFromContext(ctx)
	if unsigned(ri.Method) {
		return nil, nil
	}
	s, _ := ctx.Value(signingKey{}).(signing)
	if s.region == "" {
		s.region = c.knownRegion()
	}
	if s.payloadHash == "" {
		s.payloadHash = UnsignedPayload
	}
	var authority string
	if len(uri) > 0 {
		if u, err := url.Parse(uri[0]); err == nil {
			authority = u.Host
		}
	}
	r := request(ri.Method, authority, http.Header{"X-Amz-Content-Sha256": {s.payloadHash}})
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	creds := sigv4.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}
	if err := sigv4.Sign(r, s.body, creds, s.region, Service, now()); err != nil {
		return nil, err
	}
	md := map[string]string{
		authorizationKey: r.Header.Get("Authorization"),
		dateKey:          r.Header.Get("X-Amz-Date"),
		payloadKey:       s.payloadHash,
	}
	if c.SessionToken != "" {
		md[tokenKey] = c.SessionToken
	}
	return md, nil
}

// unsigned lists the methods every node serves without authentication:
// health checks (which also tell the region) and reflection.
func unsigned(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.") || strings.HasPrefix(fullMethod, "/grpc.reflection.")
}

// knownRegion is Region, else the learned region, else DefaultRegion.
func (c *Credentials) knownRegion() string {
	if c.Region != "" {
		return c.Region
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.learned != "" {
		return c.learned
	}
	return DefaultRegion
}

// region returns the region to sign for, asking the node with a health
// check the first time when Region is empty. A failed check (the node is
// not up yet) is asked again on the next call.
func (c *Credentials) region(ctx context.Context, cc *grpc.ClientConn) string {
	if c.Region != "" {
		return c.Region
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.learned != "" {
		return c.learned
	}
	var header metadata.MD
	_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header))
	if v := header.Get(RegionHeader); len(v) > 0 && v[0] != "" {
		c.learned = v[0]
		return c.learned
	}
	_ = err // the call itself will report an unreachable node
	return DefaultRegion
}

func (c *Credentials) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if unsigned(method) {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	s := signing{region: c.region(ctx, cc)}
	if m, ok := req.(proto.Message); ok {
		var err error
		if s.body, s.payloadHash, err = encode(m); err != nil {
			return err
		}
	}
	return invoker(context.WithValue(ctx, signingKey{}, s), method, req, reply, cc, opts...)
}

func (c *Credentials) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if unsigned(method) {
		return streamer(ctx, desc, cc, method, opts...)
	}
	s := signing{region: c.region(ctx, cc), payloadHash: UnsignedPayload}
	return streamer(context.WithValue(ctx, signingKey{}, s), desc, cc, method, opts...)
}

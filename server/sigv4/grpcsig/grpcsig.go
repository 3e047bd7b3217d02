package grpcsig

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/cofferhq/coffer/server/sigv4"
)

const (
	// Service is the signing name of Coffer's gRPC API: the fourth element
	// of the credential scope.
	Service = "coffer"
	// RegionHeader is the response header in which a node names its region,
	// on every call including health checks, so a client that was not told
	// its region can learn the credential scope before it signs.
	RegionHeader = "x-coffer-region"
	// DefaultRegion is the region a client signs for when it was given
	// none and could not learn one: cofferd's default region.
	DefaultRegion = "us-east-1"
	// UnsignedPayload in x-amz-content-sha256 leaves the message out of the
	// signature: streams (snapshots) send it, and so may clients whose
	// protobuf encoding could differ from Go's.
	UnsignedPayload = "UNSIGNED-PAYLOAD"
)

// The metadata keys a signed call carries; gRPC metadata keys are lower case.
const (
	authorizationKey = "authorization"
	dateKey          = "x-amz-date"
	tokenKey         = "x-amz-security-token"
	payloadKey       = "x-amz-content-sha256"
	authorityKey     = ":authority"
)

// Signed reports whether md carries a SigV4 authorization (rather than none,
// or a bearer token).
func Signed(md metadata.MD) bool {
	v := md.Get(authorizationKey)
	return len(v) > 0 && strings.HasPrefix(strings.TrimLeft(v[0], " \t"), sigv4.Algorithm+" ")
}

// encode is a request message's deterministic protobuf encoding and the
// hex SHA-256 of it, the payload a unary call is signed with. Encoding the
// decoded message again on the server gives the same bytes for every field
// both sides know; a field only the client knows is kept as an unknown
// field and encoded last, which is also where the client puts it when, as
// usual, new fields get the highest numbers.
func encode(m proto.Message) (body []byte, hash string, err error) {
	body, err = proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, "", err
	}
	sum := sha256.Sum256(body)
	return body, hex.EncodeToString(sum[:]), nil
}

// request is the HTTP request a signature covers: POST, the full method
// name as the path, the authority as Host (without a default ":443", which
// gRPC leaves out of the audience it hands to credentials) and the given
// headers.
func request(fullMethod, authority string, header http.Header) *http.Request {
	return &http.Request{
		Method: http.MethodPost,
		URL:    &url.URL{Path: fullMethod},
		Host:   strings.TrimSuffix(authority, ":443"),
		Header: header,
	}
}

// ScopeRegion is the region of the credential scope a signed call's
// metadata md carries, without verifying anything, or "" when md has no
// well-formed SigV4 authorization. An endpoint serving several regions
// routes a call on it; the region the call reaches verifies the signature.
// It reads md as Verify does: the scope alone is not a well-formed
// authorization, which also needs the call's x-amz-date.
func ScopeRegion(md metadata.MD) string {
	if !Signed(md) {
		return ""
	}
	return sigv4.ScopeRegion(request("", "", header(md)))
}

// header is md's metadata as the HTTP headers of the request a signature
// covers: every key but gRPC's pseudo-headers (":authority" is the Host).
func header(md metadata.MD) http.Header {
	h := make(http.Header, len(md))
	for k, vals := range md {
		if strings.HasPrefix(k, ":") {
			continue
		}
		h[textproto.CanonicalMIMEHeaderKey(k)] = vals
	}
	return h
}

// Verify checks that a call to fullMethod, whose incoming metadata is md and
// whose request message is req (nil for a stream), is signed with a known
// access key, by v (whose Service should be Service), and returns that key's
// credentials and the region of the credential scope, which the caller must
// compare with its own. Failures are *sigv4.Error as v.Verify returns them:
// a call signed more than v.MaxSkew ago is InvalidSignatureException
// ("Signature expired"), one signed for another method, or whose message
// differs from the one signed, InvalidSignatureException too.
func Verify(ctx context.Context, v *sigv4.Verifier, md metadata.MD, fullMethod string, req proto.Message) (*sigv4.Credentials, string, error) {
	var authority string
	if a := md.Get(authorityKey); len(a) > 0 {
		authority = a[0]
	}
	var body []byte
	if req != nil {
		var err error
		if body, _, err = encode(req); err != nil {
			return nil, "", err
		}
	}
	return v.Verify(ctx, request(fullMethod, authority, header(md)), body)
}

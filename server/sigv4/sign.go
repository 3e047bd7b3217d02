package sigv4

import (
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"time"
)

// unsignedHeaders are never signed by Sign: Authorization carries the
// signature; User-Agent, X-Amzn-Trace-Id, Expect and Transfer-Encoding are
// the headers the Go SDK leaves out because clients and proxies change them;
// the rest are hop-by-hop headers, which proxies may change as well.
var unsignedHeaders = map[string]bool{
	"authorization":       true,
	"user-agent":          true,
	"x-amzn-trace-id":     true,
	"expect":              true,
	"transfer-encoding":   true,
	"connection":          true,
	"keep-alive":          true,
	"proxy-authorization": true,
	"proxy-connection":    true,
	"te":                  true,
	"trailer":             true,
	"upgrade":             true,
}

// Sign signs r, whose body is body, with creds for region and service at
// now, as the Go SDK does: it sets X-Amz-Date (and X-Amz-Security-Token when
// creds has a session token), then signs host, content-length when
// r.ContentLength is positive, and every other header r has except those the
// SDK leaves unsigned and hop-by-hop ones, and sets Authorization. The
// payload hash is that of body, or X-Amz-Content-Sha256 when r already has
// it; Sign never adds that header, which Secrets Manager clients do not send.
func Sign(r *http.Request, body []byte, creds Credentials, region, service string, now time.Time) error {
	if creds.AccessKeyID == "" || creds.SecretAccessKey == "" || region == "" || service == "" {
		return ErrSigningInput
	}
	if r.Header == nil {
		r.Header = make(http.Header)
	}
	amzDate := now.UTC().Format(amzDateLayout)
	r.Header.Del("Authorization")
	r.Header.Set("X-Amz-Date", amzDate)
	if creds.SessionToken != "" {
		r.Header.Set("X-Amz-Security-Token", creds.SessionToken)
	}

	names := []string{"host"}
	if r.ContentLength > 0 {
		names = append(names, "content-length")
	}
	for key := range r.Header {
		name := strings.ToLower(key)
		if !unsignedHeaders[name] && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	signedHeaders := strings.Join(names, ";")

	hash, err := payloadHash(r, body)
	if err != nil {
		return err
	}
	date := amzDate[:8]
	// Every name comes from r, so none can be missing.
	canonical, _, _ := appendCanonicalRequest(nil, r, signedHeaders, hash)
	sig := signature(creds.SecretAccessKey, amzDate, date, region, service, canonical)

	var auth []byte
	auth = append(auth, Algorithm+" Credential="...)
	auth = append(auth, creds.AccessKeyID...)
	auth = append(auth, '/')
	auth = appendScope(auth, date, region, service)
	auth = append(auth, ", SignedHeaders="...)
	auth = append(auth, signedHeaders...)
	auth = append(auth, ", Signature="...)
	auth = hex.AppendEncode(auth, sig[:])
	r.Header.Set("Authorization", string(auth))
	return nil
}

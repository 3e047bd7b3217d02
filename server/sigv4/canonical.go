package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

const (
	// Algorithm is the only signing algorithm Coffer accepts.
	Algorithm = "AWS4-HMAC-SHA256"
	// terminator ends every credential scope.
	terminator = "aws4_request"
	// amzDateLayout is ISO 8601 basic format, as X-Amz-Date carries it.
	amzDateLayout = "20060102T150405Z"
	// unsignedPayload in X-Amz-Content-Sha256 leaves the body out of the signature.
	unsignedPayload = "UNSIGNED-PAYLOAD"
)

// appendCanonicalRequest appends r's SigV4 canonical request to dst:
// method, canonical URI, canonical query string, one "name:value" line per
// signed header, a blank line, the signed-headers list and the payload hash.
// signedHeaders is used verbatim, in its own order and case: it is the
// signer's statement of what it signed, and conforming signers send it
// lower-cased and sorted, which is the canonical form. When a signed header
// is absent from r, it returns that header's name and false.
func appendCanonicalRequest(dst []byte, r *http.Request, signedHeaders, payloadHash string) (_ []byte, missing string, ok bool) {
	dst = append(dst, r.Method...)
	dst = append(dst, '\n')
	dst = appendCanonicalURI(dst, r)
	dst = append(dst, '\n')
	dst = appendCanonicalQuery(dst, r)
	dst = append(dst, '\n')
	for name := range strings.SplitSeq(signedHeaders, ";") {
		dst = append(dst, name...)
		dst = append(dst, ':')
		var found bool
		if dst, found = appendHeaderValue(dst, r, name); !found {
			return dst, name, false
		}
		dst = append(dst, '\n')
	}
	dst = append(dst, '\n')
	dst = append(dst, signedHeaders...)
	dst = append(dst, '\n')
	return append(dst, payloadHash...), "", true
}

// appendCanonicalURI appends the escaped path with every byte outside the
// RFC 3986 unreserved set and "/" percent-encoded. The path is the one on the
// wire, already escaped, so a "%" in it becomes "%25": that is what the Go
// SDK (httpbinding.EscapePath of URL.EscapedPath) and botocore (quote of the
// split URL's path) sign for every service but S3.
func appendCanonicalURI(dst []byte, r *http.Request) []byte {
	var p string
	if r.URL != nil {
		p = r.URL.EscapedPath()
	}
	if p == "" {
		return append(dst, '/')
	}
	return appendEscaped(dst, p, false)
}

// appendCanonicalQuery appends the query parameters, each name and value
// URI-encoded (space as %20), sorted by encoded name and then encoded value:
// the spec sorts after encoding, and so does the Go SDK. Parameters the URL
// parser rejects are left out, as the Go SDK leaves them out.
func appendCanonicalQuery(dst []byte, r *http.Request) []byte {
	if r.URL == nil || r.URL.RawQuery == "" {
		return dst
	}
	query, _ := url.ParseQuery(r.URL.RawQuery)
	type param struct{ name, value string }
	var params []param
	for name, values := range query {
		encoded := string(appendEscaped(nil, name, true))
		for _, v := range values {
			params = append(params, param{encoded, string(appendEscaped(nil, v, true))})
		}
	}
	slices.SortFunc(params, func(a, b param) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		return strings.Compare(a.value, b.value)
	})
	for i, p := range params {
		if i > 0 {
			dst = append(dst, '&')
		}
		dst = append(dst, p.name...)
		dst = append(dst, '=')
		dst = append(dst, p.value...)
	}
	return dst
}

// appendEscaped appends s with every byte outside the unreserved set
// (A-Z a-z 0-9 - . _ ~) written as %XX; "/" is kept unless escapeSlash.
func appendEscaped(dst []byte, s string, escapeSlash bool) []byte {
	const upperHex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isUnreserved(c) || (c == '/' && !escapeSlash) {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', upperHex[c>>4], upperHex[c&15])
	}
	return dst
}

func isUnreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// appendHeaderValue appends the canonical value of the header name (matched
// without regard to case): each value trimmed, its inner runs of spaces and
// tabs collapsed to one space, several values joined with ",". It reports
// whether the request has the header at all.
//
// Two headers are not in the header map of a request a server received:
// host (or :authority) comes from r.Host (the Host header, or HTTP/2's
// :authority), which is also what a Go client sends in preference to any
// Host in the map, and content-length from r.ContentLength when the map
// lacks it, as on a request built by a client.
func appendHeaderValue(dst []byte, r *http.Request, name string) ([]byte, bool) {
	switch {
	case strings.EqualFold(name, "host") || name == ":authority":
		if r.Host != "" {
			return appendTrimmed(dst, r.Host), true
		}
		if values := headerValues(r.Header, name); len(values) > 0 {
			return appendJoined(dst, values), true
		}
		if r.URL != nil && r.URL.Host != "" {
			return appendTrimmed(dst, r.URL.Host), true
		}
		return dst, false
	case strings.EqualFold(name, "content-length"):
		if values := headerValues(r.Header, name); len(values) > 0 {
			return appendJoined(dst, values), true
		}
		if r.ContentLength >= 0 {
			return strconv.AppendInt(dst, r.ContentLength, 10), true
		}
		return dst, false
	}
	values := headerValues(r.Header, name)
	return appendJoined(dst, values), len(values) > 0
}

func appendJoined(dst []byte, values []string) []byte {
	for i, v := range values {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendTrimmed(dst, v)
	}
	return dst
}

// appendTrimmed appends v without leading or trailing spaces and tabs, and
// with each inner run of them replaced by one space.
func appendTrimmed(dst []byte, v string) []byte {
	pendingSpace := false
	wrote := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == ' ' || c == '\t' {
			pendingSpace = wrote
			continue
		}
		if pendingSpace {
			dst = append(dst, ' ')
			pendingSpace = false
		}
		dst = append(dst, c)
		wrote = true
	}
	return dst
}

// headerValues returns the values of the header name, matched without regard
// to case. A server's header map has canonical keys, so the lookup by the
// canonical form (built on the stack) almost always finds it; the scan is
// for maps built by hand.
func headerValues(h http.Header, name string) []string {
	var buf [64]byte
	if len(name) <= len(buf) {
		key := buf[:len(name)]
		upper := true
		for i := 0; i < len(name); i++ {
			c := name[i]
			switch {
			case upper && 'a' <= c && c <= 'z':
				c -= 'a' - 'A'
			case !upper && 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			}
			key[i] = c
			upper = c == '-'
		}
		if values, ok := h[string(key)]; ok {
			return values
		}
	}
	for k, values := range h {
		if strings.EqualFold(k, name) {
			return values
		}
	}
	return nil
}

// payloadHash is the hash the canonical request ends with: the
// X-Amz-Content-Sha256 header when the request has one (which must be
// UNSIGNED-PAYLOAD or the body's hash), otherwise the body's hash.
func payloadHash(r *http.Request, body []byte) (string, *Error) {
	sum := sha256.Sum256(body)
	computed := hex.EncodeToString(sum[:])
	values := headerValues(r.Header, "X-Amz-Content-Sha256")
	if len(values) == 0 {
		return computed, nil
	}
	claimed := values[0]
	if claimed != unsignedPayload && !strings.EqualFold(claimed, computed) {
		return "", invalid(msgPayloadMismatch)
	}
	return claimed, nil
}

// signature computes the SigV4 signature of a canonical request: the
// HMAC-SHA256, under the key derived from secret for the scope, of the
// string to sign.
func signature(secret, amzDate, date, region, service string, canonicalRequest []byte) [sha256.Size]byte {
	return signWith(SigningKey(secret, date, region, service), amzDate, date, region, service, canonicalRequest)
}

// SigningKey derives the SigV4 signing key of secret for one day (YYYYMMDD),
// region and service: kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date),
// region), service), "aws4_request"). It signs only requests scoped to that
// day, region and service, so a verifier can keep it in place of the secret.
func SigningKey(secret, date, region, service string) []byte {
	key := hmacSHA256([]byte("AWS4"+secret), date)
	key = hmacSHA256(key, region)
	key = hmacSHA256(key, service)
	return hmacSHA256(key, terminator)
}

// signWith is a request's signature under a signing key.
func signWith(key []byte, amzDate, date, region, service string, canonicalRequest []byte) [sha256.Size]byte {
	requestHash := sha256.Sum256(canonicalRequest)
	var hexHash [2 * sha256.Size]byte
	hex.Encode(hexHash[:], requestHash[:])

	mac := hmac.New(sha256.New, key)
	var sts []byte
	sts = append(make([]byte, 0, 160), Algorithm...)
	sts = append(sts, '\n')
	sts = append(sts, amzDate...)
	sts = append(sts, '\n')
	sts = appendScope(sts, date, region, service)
	sts = append(sts, '\n')
	sts = append(sts, hexHash[:]...)
	mac.Write(sts)
	var sig [sha256.Size]byte
	mac.Sum(sig[:0])
	return sig
}

func hmacSHA256(key []byte, data string) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(data))
	return mac.Sum(nil)
}

// appendScope appends the credential scope date/region/service/aws4_request.
func appendScope(dst []byte, date, region, service string) []byte {
	dst = append(dst, date...)
	dst = append(dst, '/')
	dst = append(dst, region...)
	dst = append(dst, '/')
	dst = append(dst, service...)
	dst = append(dst, '/')
	return append(dst, terminator...)
}

package sigv4

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// DefaultService is the signing name a Verifier expects when its Service is "".
const DefaultService = "secretsmanager"

// DefaultMaxSkew is how far a request's date may be from the server's clock
// when a Verifier's MaxSkew is 0; AWS allows the same.
const DefaultMaxSkew = 15 * time.Minute

// Credentials are an access key as a Lookup returns it, and the identity it
// authenticates. A verifier needs either the secret or its signing keys, and
// either the session token or its hash: a Lookup that keeps only the
// derived forms (SigningKey, SessionTokenHash) never holds the secrets.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	// SigningKey, when set, is used in place of SecretAccessKey to verify:
	// it returns the signing key for a day, region and service (see the
	// package's SigningKey), or an error when it cannot be had.
	SigningKey func(date, region, service string) ([]byte, error)
	// SessionToken, when set, must arrive as X-Amz-Security-Token; when
	// empty (and SessionTokenHash too), a request carrying a token is
	// refused.
	SessionToken string
	// SessionTokenHash, when set, is the SHA-256 of the session token that
	// must arrive, compared in place of SessionToken.
	SessionTokenHash []byte
	// Principal names the identity the key authenticates, for authorization
	// and logs.
	Principal string
}

// Lookup finds the credentials of an access key id. (nil, nil) means the key
// is unknown; an error means the lookup itself failed, and Verify returns it
// wrapped.
type Lookup func(ctx context.Context, accessKeyID string) (*Credentials, error)

// Verifier checks SigV4-signed requests. The zero value of every field but
// Lookup is usable.
type Verifier struct {
	// Service is the signing name the credential scope must carry; "" means
	// DefaultService.
	Service string
	// MaxSkew is how far X-Amz-Date may be from Now, either way; 0 means
	// DefaultMaxSkew.
	MaxSkew time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Lookup finds the secret of an access key id. Required.
	Lookup Lookup
}

// authorization is the parsed Authorization header and the date it goes with.
type authorization struct {
	algorithm     string
	credential    string
	signedHeaders string
	signature     string
	// date is X-Amz-Date, or the Date header when X-Amz-Date is absent.
	date string
}

// scope is the Credential parameter: keyid/date/region/service/terminator.
type scope struct {
	accessKeyID, date, region, service, terminator string
}

// Verify checks that r, whose body has already been read into body, carries
// a valid SigV4 Authorization header from a known access key, and returns
// that key's credentials and the region of the credential scope.
//
// It checks in the order AWS does, so that a request with several faults
// gets the error AWS would give: the header's parts and the date's presence,
// the date's format, the clock skew, that Host is signed, the algorithm, the
// credential's shape, the scope, then (in an order of Coffer's choosing) the
// payload hash and that every signed header is present, and then, as AWS
// does, the access key, the signature, and last the session token.
// Failures are *Error; a failing Lookup is returned wrapped, and is the
// server's failure, not the caller's.
func (v *Verifier) Verify(ctx context.Context, r *http.Request, body []byte) (*Credentials, string, error) {
	if v.Lookup == nil {
		return nil, "", ErrNoLookup
	}
	a, err := parseAuthorization(r)
	if err != nil {
		return nil, "", err
	}
	signedAt, err := parseDate(a.date)
	if err != nil {
		return nil, "", err
	}
	if err := v.checkSkew(signedAt); err != nil {
		return nil, "", err
	}
	if !signsHost(a.signedHeaders) {
		return nil, "", invalid(msgHostNotSigned)
	}
	if a.algorithm != Algorithm {
		return nil, "", incomplete(fmt.Sprintf("Unsupported AWS 'algorithm': '%s' (only %s for now).", a.algorithm, Algorithm))
	}
	sc, err := parseCredential(a.credential)
	if err != nil {
		return nil, "", err
	}
	if err := v.checkScope(sc, a.date); err != nil {
		return nil, "", err
	}
	// The canonical request needs no secret, so it is built, and its
	// faults reported, before the key is looked up.
	hash, perr := payloadHash(r, body)
	if perr != nil {
		return nil, "", perr
	}
	var buf [1024]byte
	canonical, missing, ok := appendCanonicalRequest(buf[:0], r, a.signedHeaders, hash)
	if !ok {
		return nil, "", incomplete(fmt.Sprintf("'%s' is named as a SignedHeader, but it does not exist in the HTTP request.", missing))
	}

	if sc.accessKeyID == "" {
		return nil, "", unrecognized()
	}
	creds, err := v.Lookup(ctx, sc.accessKeyID)
	if err != nil {
		return nil, "", fmt.Errorf("sigv4: looking up access key %q: %w", sc.accessKeyID, err)
	}
	// A key without a secret would verify signatures made with the empty
	// secret, which anyone can make.
	if creds == nil || creds.SecretAccessKey == "" && creds.SigningKey == nil {
		return nil, "", unrecognized()
	}

	var want [32]byte
	if creds.SigningKey != nil {
		key, err := creds.SigningKey(sc.date, sc.region, sc.service)
		if err != nil {
			return nil, "", fmt.Errorf("sigv4: signing key of %q: %w", sc.accessKeyID, err)
		}
		want = signWith(key, a.date, sc.date, sc.region, sc.service, canonical)
	} else {
		want = signature(creds.SecretAccessKey, a.date, sc.date, sc.region, sc.service, canonical)
	}
	var wantHex [2 * len(want)]byte
	hex.Encode(wantHex[:], want[:])
	// hmac.Equal answers at once for a length mismatch, which leaks only the
	// length of a signature, and that is public.
	if !hmac.Equal(wantHex[:], []byte(a.signature)) {
		return nil, "", invalid(msgSignatureInvalid)
	}

	if !tokenMatches(r, creds.SessionToken, creds.SessionTokenHash) {
		return nil, "", unrecognized()
	}
	return creds, sc.region, nil
}

// parseAuthorization reads the Authorization header into its parts and
// finds the date. It fails when there is no header, when the request is
// presigned, and when a part, the date, or several of them are missing.
func parseAuthorization(r *http.Request) (authorization, error) {
	var a authorization
	headers := r.Header["Authorization"]
	presigned := r.URL != nil && strings.Contains(r.URL.RawQuery, "X-Amz-Algorithm") && r.URL.Query().Has("X-Amz-Algorithm")
	switch {
	case len(headers) == 0 && presigned:
		return a, incomplete(msgPresigned)
	case len(headers) == 0:
		return a, &Error{Code: CodeMissingAuthenticationToken, Message: msgMissingToken}
	case presigned:
		return a, incomplete(msgBothAuthKinds)
	case len(headers) > 1:
		return a, incomplete(msgManyAuthHeader)
	}

	alg, params, _ := strings.Cut(strings.TrimLeft(headers[0], " \t"), " ")
	a.algorithm = alg
	// Only a SigV4 header is made of key=value parts; for anything else
	// (SigV2's "AWS key:signature", a bearer token) AWS reports the SigV4
	// parameters as missing.
	if strings.HasPrefix(alg, "AWS4-") {
		for part := range strings.FieldsFuncSeq(params, func(c rune) bool { return c == ',' || c == ' ' || c == '\t' }) {
			key, value, ok := strings.Cut(part, "=")
			if !ok {
				return a, incomplete(msgMissingEqual)
			}
			switch key {
			case "Credential":
				a.credential = value
			case "SignedHeaders":
				a.signedHeaders = value
			case "Signature":
				a.signature = value
			}
		}
	}

	a.date = r.Header.Get("X-Amz-Date")
	if a.date == "" {
		a.date = r.Header.Get("Date")
	}
	var missing []string
	if a.credential == "" {
		missing = append(missing, "Authorization header requires 'Credential' parameter.")
	}
	if a.signature == "" {
		missing = append(missing, "Authorization header requires 'Signature' parameter.")
	}
	if a.signedHeaders == "" {
		missing = append(missing, "Authorization header requires 'SignedHeaders' parameter.")
	}
	if a.date == "" {
		missing = append(missing, "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
	}
	// AWS ends this message with "Authorization=" and the whole header,
	// which holds the signature; Coffer leaves it out.
	if len(missing) > 0 {
		return a, incomplete(strings.Join(missing, " "))
	}
	return a, nil
}

// parseDate parses an ISO 8601 basic-format date, YYYYMMDDTHHMMSSZ, exactly:
// time.Parse alone would take one-digit hours.
func parseDate(s string) (time.Time, error) {
	ok := len(s) == len(amzDateLayout)
	for i := 0; ok && i < len(s); i++ {
		switch i {
		case 8:
			ok = s[i] == 'T'
		case 15:
			ok = s[i] == 'Z'
		default:
			ok = '0' <= s[i] && s[i] <= '9'
		}
	}
	var t time.Time
	if ok {
		var err error
		t, err = time.Parse(amzDateLayout, s)
		ok = err == nil
	}
	if !ok {
		return time.Time{}, incomplete(fmt.Sprintf("Date must be in ISO-8601 'basic format'. Got '%s'. See http://en.wikipedia.org/wiki/ISO_8601", s))
	}
	return t, nil
}

// checkSkew refuses a date more than MaxSkew before or after now, in AWS's
// words.
func (v *Verifier) checkSkew(signedAt time.Time) error {
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	skew := v.MaxSkew
	if skew <= 0 {
		skew = DefaultMaxSkew
	}
	t := now().UTC()
	if earliest := t.Add(-skew); signedAt.Before(earliest) {
		return invalid(fmt.Sprintf("Signature expired: %s is now earlier than %s (%s - %s)",
			signedAt.Format(amzDateLayout), earliest.Format(amzDateLayout), t.Format(amzDateLayout), skewText(skew)))
	}
	if latest := t.Add(skew); signedAt.After(latest) {
		return invalid(fmt.Sprintf("Signature not yet current: %s is still later than %s (%s + %s)",
			signedAt.Format(amzDateLayout), latest.Format(amzDateLayout), t.Format(amzDateLayout), skewText(skew)))
	}
	return nil
}

// skewText writes the skew as AWS does, "15 min.".
func skewText(skew time.Duration) string {
	if skew%time.Minute != 0 {
		return skew.String() + "."
	}
	return fmt.Sprintf("%d min.", int64(skew/time.Minute))
}

// signsHost reports whether the signed-headers list names host (or HTTP/2's
// :authority), in any case.
func signsHost(signedHeaders string) bool {
	for name := range strings.SplitSeq(signedHeaders, ";") {
		if strings.EqualFold(name, "host") || name == ":authority" {
			return true
		}
	}
	return false
}

// parseCredential splits keyid/date/region/service/aws4_request. Trailing
// slashes are ignored, as AWS ignores them.
func parseCredential(credential string) (scope, error) {
	parts := strings.Split(strings.TrimRight(credential, "/"), "/")
	if len(parts) != 5 {
		return scope{}, incomplete(fmt.Sprintf("Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '%s'", credential))
	}
	return scope{parts[0], parts[1], parts[2], parts[3], parts[4]}, nil
}

// checkScope refuses a scope with an invalid region, another service, a
// wrong terminator or another day than the request's date, listing every
// fault as AWS does.
func (v *Verifier) checkScope(sc scope, amzDate string) error {
	service := v.Service
	if service == "" {
		service = DefaultService
	}
	var faults []string
	if !validRegion(sc.region) {
		faults = append(faults, fmt.Sprintf("Credential should be scoped to a valid region, not '%s'.", sc.region))
	}
	if sc.service != service {
		faults = append(faults, fmt.Sprintf("Credential should be scoped to correct service: '%s'.", service))
	}
	if sc.terminator != terminator {
		faults = append(faults, fmt.Sprintf("Credential should be scoped with a valid terminator: '%s', not '%s'.", terminator, sc.terminator))
	}
	if day := amzDate[:8]; sc.date != day {
		faults = append(faults, fmt.Sprintf("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.", sc.date, day, amzDate))
	}
	if len(faults) > 0 {
		return invalid(strings.Join(faults, " "))
	}
	return nil
}

// validRegion accepts the shape of an AWS region name (lower-case letters,
// digits and hyphens, at most 64 of them). Coffer serves whichever region a
// client names, so the region's name is all there is to check; it ends up in
// ARNs, which is why it is checked at all.
func validRegion(region string) bool {
	if region == "" || len(region) > 64 {
		return false
	}
	for i := 0; i < len(region); i++ {
		c := region[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// tokenMatches reports whether the request's X-Amz-Security-Token is the
// credentials' session token: absent when they have none, equal (in constant
// time) when they have one — the token itself, or its SHA-256 wantHash.
func tokenMatches(r *http.Request, want string, wantHash []byte) bool {
	var got string
	if values := headerValues(r.Header, "X-Amz-Security-Token"); len(values) > 0 {
		if len(values) > 1 {
			return false
		}
		got = values[0]
	}
	switch {
	case len(wantHash) > 0:
		h := sha256.Sum256([]byte(got))
		return got != "" && subtle.ConstantTimeCompare(h[:], wantHash) == 1
	case want == "":
		return got == ""
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// ScopeRegion is the region r's SigV4 Authorization header is scoped to,
// without verifying anything, or "" when r has no well-formed one. An
// endpoint that serves several regions routes on it; the region the
// request reaches verifies the signature.
func ScopeRegion(r *http.Request) string {
	a, err := parseAuthorization(r)
	if err != nil || a.credential == "" {
		return ""
	}
	sc, err := parseCredential(a.credential)
	if err != nil {
		return ""
	}
	return sc.region
}

package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	"github.com/cofferhq/coffer/server/sigv4"
)

// How a node checks credentials without keeping them. The state holds each
// access key's secret (and a session's token) sealed under the keyring; the
// IAM cache keeps, per access key, only what verifies a request: the
// SHA-256 of the secret (the bearer form compares it), the SHA-256 of the
// session token, and the SigV4 signing keys of the days, regions and
// services requests were signed for — each signs only requests so scoped,
// and none gives back the secret. A signing key for a new scope is derived
// from the secret unsealed for that moment and cleared after.

// ErrUnknownAccessKey means no active key has that id.
var ErrUnknownAccessKey = errors.New("unknown access key")

// maxCachedKeys bounds the credential cache; sessions come and go.
const maxCachedKeys = 10000

// maxSigningKeys bounds the signing keys kept per access key: a day, the
// next and the one before for each service, and room to spare.
const maxSigningKeys = 8

// Key is an access key as authentication needs it: whose it is, and for
// temporary credentials when they expire. It holds no secret; it checks
// one.
type Key struct {
	Principal string
	// Expiration is set for temporary credentials.
	Expiration time.Time
	cred       *credential
}

// Expired reports whether temporary credentials have run out at now.
func (k Key) Expired(now time.Time) bool {
	return !k.Expiration.IsZero() && !now.Before(k.Expiration)
}

// MatchesSecret reports, in constant time, whether secret is the key's
// secret access key.
func (k Key) MatchesSecret(secret string) bool {
	h := sha256.Sum256([]byte(secret))
	return k.cred != nil && subtle.ConstantTimeCompare(h[:], k.cred.secretHash[:]) == 1
}

// MatchesToken reports, in constant time, whether token is the session
// token of temporary credentials, or empty for a long-term key.
func (k Key) MatchesToken(token string) bool {
	if k.cred == nil {
		return false
	}
	if !k.cred.session {
		return token == ""
	}
	h := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(h[:], k.cred.tokenHash[:]) == 1
}

// SigV4 is the key as a SigV4 verifier needs it: signing keys derived on
// demand and the session token's hash, never the secret or the token.
func (k Key) SigV4(id string) *sigv4.Credentials {
	c := &sigv4.Credentials{AccessKeyID: id, Principal: k.Principal, SigningKey: k.cred.signingKey}
	if k.cred.session {
		c.SessionTokenHash = k.cred.tokenHash[:]
	}
	return c
}

// credential is what the cache keeps of one access key.
type credential struct {
	sealed     string // the ciphertext the verifiers were made from
	principal  string
	expiration time.Time
	session    bool
	secretHash [sha256.Size]byte
	tokenHash  [sha256.Size]byte
	// derive makes the signing key of a scope from the sealed secret.
	derive func(date, region, service string) ([]byte, error)

	mu      sync.Mutex
	signing map[string][]byte // "date/region/service" → signing key
}

// signingKey returns the SigV4 signing key for a scope, derived the first
// time it is asked for.
func (c *credential) signingKey(date, region, service string) ([]byte, error) {
	scope := date + "/" + region + "/" + service
	c.mu.Lock()
	key, ok := c.signing[scope]
	c.mu.Unlock()
	if ok {
		return key, nil
	}
	key, err := c.derive(date, region, service)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.signing) >= maxSigningKeys {
		clear(c.signing)
	}
	c.signing[scope] = key
	return key, nil
}

// LookupKey returns an active access key (or temporary credentials, with
// their expiration). A key this node does not know yet (created moments ago
// through another node) is looked up again after a read barrier before it
// is called unknown. It does not judge expiration: a caller verifies the
// signature first, so that a forged request never learns whether a key id
// exists, and then checks Key.Expired.
func (i *IAM) LookupKey(ctx context.Context, id string) (Key, error) {
	k, err := i.state.AccessKey(id)
	if err == nil && k == nil {
		if _, berr := i.svc.rep.ReadBarrier(ctx); berr == nil {
			k, err = i.state.AccessKey(id)
		}
	}
	if err != nil {
		return Key{}, err
	}
	if k == nil || k.GetStatus() != "Active" {
		return Key{}, ErrUnknownAccessKey
	}
	sealed := string(k.GetSealedSecret().GetCiphertext())
	i.mu.Lock()
	c, ok := i.cache[id]
	i.mu.Unlock()
	if !ok || c.sealed != sealed {
		if c, err = i.newCredential(id, k); err != nil {
			return Key{}, err
		}
		i.mu.Lock()
		if len(i.cache) >= maxCachedKeys {
			clear(i.cache)
		}
		i.cache[id] = c
		i.mu.Unlock()
	}
	return Key{Principal: c.principal, Expiration: c.expiration, cred: c}, nil
}

// newCredential unseals k's secret (and token) only to make its verifiers.
func (i *IAM) newCredential(id string, k *storagev1.AccessKey) (*credential, error) {
	kr, err := i.svc.keys()
	if err != nil {
		return nil, err
	}
	secret, err := kr.Unseal(k.GetSealedSecret(), accessKeyAAD(id), id)
	if err != nil {
		return nil, err
	}
	defer clear(secret)
	c := &credential{sealed: string(k.GetSealedSecret().GetCiphertext()), principal: k.GetPrincipal(),
		secretHash: sha256.Sum256(secret), signing: map[string][]byte{}}
	if exp := k.GetExpiration(); exp != nil {
		token, err := kr.Unseal(k.GetSealedSessionToken(), sessionTokenAAD(id), id)
		if err != nil {
			return nil, err
		}
		c.tokenHash = sha256.Sum256(token)
		clear(token)
		c.session, c.expiration = true, exp.AsTime()
	}
	sealedSecret := k.GetSealedSecret()
	c.derive = func(date, region, service string) ([]byte, error) {
		kr, err := i.svc.keys()
		if err != nil {
			return nil, err
		}
		secret, err := kr.Unseal(sealedSecret, accessKeyAAD(id), id)
		if err != nil {
			return nil, fmt.Errorf("signing key of %s: %w", id, err)
		}
		defer clear(secret)
		return sigv4.SigningKey(string(secret), date, region, service), nil
	}
	return c, nil
}

// ErrExpiredToken is the answer to temporary credentials past their
// expiration, in AWS's words.
func errExpiredToken() *APIError {
	return apiErr(TypeExpiredToken, "The security token included in the request is expired")
}

func errInvalidToken() *APIError {
	return apiErr(TypeUnrecognizedClient, "The security token included in the request is invalid.")
}

// CheckBearer authenticates "AKID:SECRET" (the gRPC bearer form of an
// access key) or "AKID:SECRET:SESSION_TOKEN" (temporary credentials) and
// returns the caller's identity.
func (i *IAM) CheckBearer(ctx context.Context, token string) (Identity, error) {
	id, rest, ok := strings.Cut(token, ":")
	if !ok {
		return Identity{}, apiErr(TypeUnrecognizedClient, "The bearer token must be ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN].")
	}
	given, session, _ := strings.Cut(rest, ":")
	k, err := i.LookupKey(ctx, id)
	if errors.Is(err, ErrUnknownAccessKey) {
		return Identity{}, errInvalidToken()
	}
	if err != nil {
		return Identity{}, err
	}
	// Both are compared, whatever the first answer, so the time taken says
	// nothing about which part was wrong.
	secretOK, tokenOK := k.MatchesSecret(given), k.MatchesToken(session)
	if !secretOK || !tokenOK {
		return Identity{}, errInvalidToken()
	}
	if i.Expired(k) {
		return Identity{}, errExpiredToken()
	}
	return Identity{Principal: k.Principal, AccessKeyID: id, Session: !k.Expiration.IsZero()}, nil
}

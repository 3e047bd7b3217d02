package kms

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Shamir's secret sharing over GF(2^8), byte by byte, as Vault's shamir
// package does: a share is one x coordinate (1..255) followed by, for each
// byte of the secret, the value at x of a random polynomial of degree
// threshold-1 whose constant term is that byte. Any threshold shares give
// the secret back by Lagrange interpolation at 0; fewer give every secret
// with equal probability, so they say nothing of it.
//
// Combining the wrong shares (too few, or another key's) yields some other
// 32 bytes without error; RootKeyCheck is what tells: a seal stores the
// check of its root key and refuses a combination whose check differs.

// ErrShares means shares could not be split or combined: a bad threshold
// or count, shares of different lengths, a repeated or zero x coordinate,
// or a combination that is not the root key the seal was made with.
var ErrShares = errors.New("kms: invalid key shares")

// Split splits secret into n shares, any threshold of which recover it
// (2 <= threshold <= n <= 255).
func Split(secret []byte, n, threshold int) ([][]byte, error) {
	switch {
	case len(secret) == 0:
		return nil, fmt.Errorf("%w: nothing to split", ErrShares)
	case threshold < 2 || n < threshold || n > 255:
		return nil, fmt.Errorf("%w: need 2 <= threshold (%d) <= shares (%d) <= 255", ErrShares, threshold, n)
	}
	shares := make([][]byte, n)
	for i := range shares {
		shares[i] = make([]byte, 1+len(secret))
		shares[i][0] = byte(i + 1)
	}
	coeffs := make([]byte, threshold)
	defer clear(coeffs)
	for j, b := range secret {
		coeffs[0] = b
		rand.Read(coeffs[1:]) // never fails: crypto/rand crashes instead
		for i := range shares {
			shares[i][1+j] = evaluate(coeffs, shares[i][0])
		}
	}
	return shares, nil
}

// Combine recovers the secret from shares made by Split. With fewer than
// the threshold, or shares of different splits, it returns some other
// bytes: check the result (RootKeyCheck).
func Combine(shares [][]byte) ([]byte, error) {
	if len(shares) < 2 {
		return nil, fmt.Errorf("%w: at least 2 shares are needed", ErrShares)
	}
	size := len(shares[0])
	seen := map[byte]bool{}
	for _, s := range shares {
		switch {
		case len(s) != size || size < 2:
			return nil, fmt.Errorf("%w: shares differ in length", ErrShares)
		case s[0] == 0 || seen[s[0]]:
			return nil, fmt.Errorf("%w: a share is repeated or malformed", ErrShares)
		}
		seen[s[0]] = true
	}
	secret := make([]byte, size-1)
	for j := range secret {
		var acc byte
		for i, si := range shares {
			// Lagrange basis at 0: prod over m != i of x_m / (x_m - x_i);
			// in GF(2^8) subtraction is xor.
			num, den := byte(1), byte(1)
			for m, sm := range shares {
				if m == i {
					continue
				}
				num = gfMul(num, sm[0])
				den = gfMul(den, sm[0]^si[0])
			}
			acc ^= gfMul(si[1+j], gfDiv(num, den))
		}
		secret[j] = acc
	}
	return secret, nil
}

// rootCheckDomain keys RootKeyCheck.
const rootCheckDomain = "coffer/kms/v1/root-key-check"

// RootKeyCheck is a value a seal stores beside its shares to recognise
// its root key: HMAC-SHA256 under the root key of a fixed domain string.
// It reveals nothing usable about the key.
func RootKeyCheck(root []byte) []byte {
	mac := hmac.New(sha256.New, root)
	mac.Write([]byte(rootCheckDomain))
	return mac.Sum(nil)
}

// CombineRootKey combines shares and returns the root key if its check
// matches check; otherwise ErrShares (too few, wrong or altered shares),
// and nothing of what was combined is kept.
func CombineRootKey(shares [][]byte, check []byte) ([]byte, error) {
	key, err := Combine(shares)
	if err != nil {
		return nil, err
	}
	if len(key) != rootKeySize || !hmac.Equal(RootKeyCheck(key), check) {
		clear(key)
		return nil, fmt.Errorf("%w: the shares do not combine to this seal's root key (too few, or wrong ones)", ErrShares)
	}
	return key, nil
}

// evaluate is the polynomial with coefficients coeffs (constant first) at x.
func evaluate(coeffs []byte, x byte) byte {
	var y byte
	for i := len(coeffs) - 1; i >= 0; i-- {
		y = gfMul(y, x) ^ coeffs[i]
	}
	return y
}

// gfMul multiplies in GF(2^8) with the AES polynomial x^8+x^4+x^3+x+1,
// in constant time (no table indexed by secret bytes).
func gfMul(a, b byte) byte {
	var p byte
	for range 8 {
		p ^= -(b & 1) & a
		hi := a >> 7
		a = a<<1 ^ -hi&0x1b
		b >>= 1
	}
	return p
}

// gfDiv divides a by b (b != 0): a * b^254, b's inverse.
func gfDiv(a, b byte) byte {
	inv := byte(1)
	base := b
	for e := 254; e > 0; e >>= 1 {
		if e&1 == 1 {
			inv = gfMul(inv, base)
		}
		base = gfMul(base, base)
	}
	return gfMul(a, inv)
}

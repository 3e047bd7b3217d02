package kms

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

func TestGF256(t *testing.T) {
	for a := 1; a < 256; a++ {
		if got := gfMul(gfDiv(1, byte(a)), byte(a)); got != 1 {
			t.Fatalf("%d * (1/%d) = %d", a, a, got)
		}
	}
	// 0x53 * 0xca = 0x01 in the AES field (FIPS 197, 4.2).
	if gfMul(0x53, 0xca) != 0x01 {
		t.Fatal("0x53 * 0xca != 1")
	}
}

// TestShamirThreshold: 3 of 5 shares give the root key back, whichever
// three; 2 do not; a share of another split or an altered one is refused.
func TestShamirThreshold(t *testing.T) {
	root := make([]byte, rootKeySize)
	rand.Read(root)
	shares, err := Split(root, 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	check := RootKeyCheck(root)
	for a := 0; a < 5; a++ {
		for b := a + 1; b < 5; b++ {
			for c := b + 1; c < 5; c++ {
				got, err := CombineRootKey([][]byte{shares[a], shares[b], shares[c]}, check)
				if err != nil || !bytes.Equal(got, root) {
					t.Fatalf("shares %d,%d,%d: %v", a, b, c, err)
				}
			}
			if _, err := CombineRootKey([][]byte{shares[a], shares[b]}, check); !errors.Is(err, ErrShares) {
				t.Fatalf("two shares %d,%d unsealed: %v", a, b, err)
			}
		}
	}
	all, err := CombineRootKey(shares, check)
	if err != nil || !bytes.Equal(all, root) {
		t.Fatalf("all five shares: %v", err)
	}
	other, _ := Split(root, 5, 3) // another split of the same key
	if _, err := CombineRootKey([][]byte{shares[0], shares[1], other[2]}, check); !errors.Is(err, ErrShares) {
		t.Fatalf("mixed splits unsealed: %v", err)
	}
	altered := bytes.Clone(shares[2])
	altered[7] ^= 1
	if _, err := CombineRootKey([][]byte{shares[0], shares[1], altered}, check); !errors.Is(err, ErrShares) {
		t.Fatalf("an altered share unsealed: %v", err)
	}
	if _, err := CombineRootKey([][]byte{shares[0], shares[0], shares[1]}, check); !errors.Is(err, ErrShares) {
		t.Fatalf("a repeated share: %v", err)
	}
	for _, bad := range [][2]int{{1, 1}, {3, 4}, {256, 3}} {
		if _, err := Split(root, bad[0], bad[1]); !errors.Is(err, ErrShares) {
			t.Fatalf("Split(n=%d, threshold=%d): %v", bad[0], bad[1], err)
		}
	}
}

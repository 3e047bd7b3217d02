package kms

import (
	"bytes"
	"errors"
	"testing"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
)

// TestShippedValueOpensOnlyInTheDestination: a value exported by one
// region and imported by its pair opens there with the same ciphertext;
// a third region, or a shipment claiming another direction, cannot open it.
func TestShippedValueOpensOnlyInTheDestination(t *testing.T) {
	rootA, _, krA := newTestKeyring(t)
	rootB, _, krB := newTestKeyring(t)
	rootC := randomBytes(t, 32)
	pubOf := func(root []byte) []byte {
		k, err := PairingKey(root)
		if err != nil {
			t.Fatal(err)
		}
		return k.PublicKey().Bytes()
	}
	ab, err := PairwiseKey(rootA, pubOf(rootB), "us-east-1", "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	ba, err := PairwiseKey(rootB, pubOf(rootA), "eu-west-1", "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ab, ba) {
		t.Fatal("the two sides derived different pairwise keys")
	}
	cb, _ := PairwiseKey(rootC, pubOf(rootB), "ap-south-1", "eu-west-1")
	if bytes.Equal(cb, ab) {
		t.Fatal("an unpaired region derived the pairwise key")
	}

	const arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"
	sealed, err := krA.Seal(krA.DefaultKeyID(), "db", arn, "v1", storagev1.ValueKind_VALUE_KIND_STRING, []byte("hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := krA.ExportValue(sealed, arn, "v1", ab, "us-east-1", "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(shipped.GetCiphertext(), sealed.GetCiphertext()) || bytes.Contains(shipped.GetWrappedDataKey(), []byte("hunter2")) {
		t.Fatal("the ciphertext changed in transit")
	}
	if _, err := krB.ImportValue(shipped, arn, "v1", cb, "us-east-1", "eu-west-1", krB.DefaultKeyID()); !errors.Is(err, ErrDecryption) {
		t.Fatalf("import under another pair's key: %v, want ErrDecryption", err)
	}
	if _, err := krB.ImportValue(shipped, arn, "v1", ba, "ap-south-1", "eu-west-1", krB.DefaultKeyID()); !errors.Is(err, ErrDecryption) {
		t.Fatalf("import claiming another source: %v, want ErrDecryption", err)
	}
	local, err := krB.ImportValue(shipped, arn, "v1", ba, "us-east-1", "eu-west-1", krB.DefaultKeyID())
	if err != nil {
		t.Fatal(err)
	}
	plain, err := krB.Unseal(local, arn, "v1")
	if err != nil || string(plain) != "hunter2" {
		t.Fatalf("unseal in the destination: %q, %v", plain, err)
	}
	if _, err := krA.Unseal(local, arn, "v1"); err == nil {
		t.Fatal("the source's keyring opened the destination's copy")
	}
}

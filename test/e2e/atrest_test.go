package e2e

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	storagev1 "github.com/cofferhq/coffer/proto/coffer/storage/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/test/wait"
)

// TestNoPlaintextAtRest stores values carrying a unique canary through every
// write path, reads them back, lets Raft snapshot, stops the node, and then
// searches every file under the data directory and the node's log for the
// values (raw, base64 and hex) and for the root key.
func TestNoPlaintextAtRest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// Snapshot after every new log entry, so state.bin files exist to search.
	n := startNode(t, dir, withSnapshots(1, 100*time.Millisecond))
	ctx := t.Context()
	sm := n.sm

	canary := "CANARY-" + randHex(t, 16)
	values := [][]byte{
		[]byte(canary),
		[]byte(`{"password":"` + canary + `"}`),
		append(append([]byte{0x00, 0xff}, canary...), 0x01, 0x02),
		[]byte("put " + canary),
		[]byte("pending " + canary),
		[]byte("update " + canary),
		[]byte("batch " + canary),
	}
	must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "e2e/rest/plain", ClientRequestToken: newToken(t), SecretString: ptr(string(values[0]))}))(t)
	must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "e2e/rest/json", ClientRequestToken: newToken(t), SecretString: ptr(string(values[1]))}))(t)
	must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "e2e/rest/binary", ClientRequestToken: newToken(t), SecretBinary: values[2]}))(t)
	must(sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "e2e/rest/plain", ClientRequestToken: newToken(t), SecretString: ptr(string(values[3]))}))(t)
	must(sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "e2e/rest/json", ClientRequestToken: newToken(t), SecretString: ptr(string(values[4])), VersionStages: []string{"AWSPENDING"}}))(t)
	must(sm.UpdateSecret(ctx, &cofferv1.UpdateSecretRequest{SecretId: "e2e/rest/binary", ClientRequestToken: newToken(t), SecretBinary: values[5]}))(t)
	must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "e2e/rest/batch", ClientRequestToken: newToken(t), SecretString: ptr(string(values[6]))}))(t)

	// Read everything back, through each read path. This also shows the
	// values were stored at all, so the search below can fail.
	read := func(req *cofferv1.GetSecretValueRequest) []byte {
		v := must(sm.GetSecretValue(ctx, req))(t)
		if v.SecretString != nil {
			return []byte(v.GetSecretString())
		}
		return v.GetSecretBinary()
	}
	for _, c := range []struct {
		req  *cofferv1.GetSecretValueRequest
		want []byte
	}{
		{&cofferv1.GetSecretValueRequest{SecretId: "e2e/rest/plain"}, values[3]},
		{&cofferv1.GetSecretValueRequest{SecretId: "e2e/rest/plain", VersionStage: "AWSPREVIOUS"}, values[0]},
		{&cofferv1.GetSecretValueRequest{SecretId: "e2e/rest/json"}, values[1]},
		{&cofferv1.GetSecretValueRequest{SecretId: "e2e/rest/json", VersionStage: "AWSPENDING"}, values[4]},
		{&cofferv1.GetSecretValueRequest{SecretId: "e2e/rest/binary"}, values[5]},
		{&cofferv1.GetSecretValueRequest{SecretId: "e2e/rest/binary", VersionStage: "AWSPREVIOUS"}, values[2]},
	} {
		if got := read(c.req); !bytes.Equal(got, c.want) || !bytes.Contains(got, []byte(canary)) {
			t.Errorf("GetSecretValue(%v) = %q, want %q", c.req, got, c.want)
		}
	}
	batch := must(sm.BatchGetSecretValue(ctx, &cofferv1.BatchGetSecretValueRequest{Filters: []*cofferv1.Filter{{Key: "name", Values: []string{"e2e/rest/"}}}}))(t)
	if len(batch.GetSecretValues()) != 4 || len(batch.GetErrors()) != 0 {
		t.Errorf("BatchGetSecretValue returned %d values and errors %v, want 4 values", len(batch.GetSecretValues()), batch.GetErrors())
	}
	if out, _, code := n.cli(t, "secrets", "get", "e2e/rest/batch", "--value-only"); code != 0 || out != string(values[6])+"\n" {
		t.Errorf("coffer secrets get = %q (exit %d)", out, code)
	}
	wait.Until(t, 30*time.Second, func() error {
		d, err := sm.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: "e2e/rest/batch"})
		if err != nil || d.GetLastAccessedDate() == nil {
			return fmt.Errorf("last access not recorded yet (%v)", err)
		}
		return nil
	})

	// A customer KMS key, rotated, protecting a secret: its material (both
	// versions) must appear nowhere either. The errors and log lines key
	// operations produce are in the log searched below.
	keysAPI := cofferv1.NewKeyServiceClient(n.conn)
	cmk := must(keysAPI.CreateKey(ctx, &cofferv1.CreateKeyRequest{Description: "canary key"}))(t)
	cmkID := cmk.GetKeyMetadata().GetKeyId()
	must(keysAPI.CreateAlias(ctx, &cofferv1.CreateAliasRequest{AliasName: "alias/canary", TargetKeyId: cmkID}))(t)
	must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "e2e/rest/cmk", ClientRequestToken: newToken(t), SecretString: ptr("cmk " + canary), KmsKeyId: "alias/canary"}))(t)
	must(keysAPI.RotateKeyOnDemand(ctx, &cofferv1.RotateKeyOnDemandRequest{KeyId: cmkID}))(t)
	must(sm.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: "e2e/rest/cmk", ClientRequestToken: newToken(t), SecretString: ptr("cmk2 " + canary)}))(t)
	must(keysAPI.DisableKey(ctx, &cofferv1.DisableKeyRequest{KeyId: cmkID}))(t)
	if _, err := sm.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: "e2e/rest/cmk"}); err == nil {
		t.Error("a secret under a disabled key was read")
	}
	must(keysAPI.EnableKey(ctx, &cofferv1.EnableKeyRequest{KeyId: cmkID}))(t)
	if got := string(read(&cofferv1.GetSecretValueRequest{SecretId: "e2e/rest/cmk"})); got != "cmk2 "+canary {
		t.Errorf("the secret under the customer key reads %q", got)
	}

	// A snapshot taken after the writes holds this marker, which is stored
	// in plain text (a description is metadata, not a value); finding it
	// proves the snapshot search reads what the state holds.
	marker := "SNAPSHOT-MARKER-" + randHex(t, 8)
	must(sm.CreateSecret(ctx, &cofferv1.CreateSecretRequest{Name: "e2e/rest/marker", Description: marker}))(t)
	snapshots := filepath.Join(n.dataDir, "raft", "snapshots")
	wait.Until(t, 60*time.Second, func() error {
		states, _ := filepath.Glob(filepath.Join(snapshots, "*", "state.bin"))
		for _, f := range states {
			if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(marker)) {
				return nil
			}
		}
		return fmt.Errorf("no snapshot holds %s among %v", marker, states)
	})

	n.stop()

	rootKey := readRootKey(t, n.keyFile)
	needles := map[string][]byte{
		"the canary":                 []byte(canary),
		"the canary in base64":       []byte(base64.StdEncoding.EncodeToString([]byte(canary))),
		"the canary in hex":          []byte(hex.EncodeToString([]byte(canary))),
		"the root key":               rootKey,
		"the root key in base64":     []byte(base64.RawStdEncoding.EncodeToString(rootKey)),
		"the root key in URL base64": []byte(base64.RawURLEncoding.EncodeToString(rootKey)),
		"the root key in hex":        []byte(hex.EncodeToString(rootKey)),
	}
	for name, material := range keyMaterial(t, filepath.Join(n.dataDir, "state.db"), rootKey) {
		if len(material) != 32 {
			t.Fatalf("%s is %d bytes", name, len(material))
		}
		needles[name] = material
		needles[name+" in base64"] = []byte(base64.RawStdEncoding.EncodeToString(material))
		needles[name+" in hex"] = []byte(hex.EncodeToString(material))
	}
	if len(needles) < 7+3*4 {
		t.Fatalf("found too little key material to search for: %d needles", len(needles))
	}
	for i, v := range values {
		needles[fmt.Sprintf("value %d in base64", i)] = []byte(base64.StdEncoding.EncodeToString(v))
		needles[fmt.Sprintf("value %d in hex", i)] = []byte(hex.EncodeToString(v))
	}

	files := []string{n.logFile}
	err := filepath.WalkDir(n.dataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	markerSeen := false
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, f)
		switch {
		case filepath.Base(f) == "state.db":
			kinds["state.db"]++
		case filepath.Base(f) == "raft.db":
			kinds["raft.db"]++
		case strings.HasPrefix(rel, filepath.Join("data", "raft", "snapshots")) && filepath.Base(f) == "state.bin":
			kinds["snapshot"]++
			markerSeen = markerSeen || bytes.Contains(b, []byte(marker))
		}
		for what, needle := range needles {
			if i := bytes.Index(b, needle); i >= 0 {
				t.Errorf("%s (%d bytes) contains %s at offset %d", rel, len(b), what, i)
			}
		}
	}
	for _, k := range []string{"state.db", "raft.db", "snapshot"} {
		if kinds[k] == 0 {
			t.Errorf("searched %v but found no %s", files, k)
		}
	}
	if !markerSeen {
		t.Errorf("no snapshot file holds the marker written after the values")
	}
	var searched []string
	for _, f := range files {
		rel, _ := filepath.Rel(dir, f)
		searched = append(searched, rel)
	}
	t.Logf("searched %d files for %d needles: %s", len(files), len(needles), strings.Join(searched, ", "))
}

// readRootKey decodes a key file written by "cofferd keygen": the base64 of
// 32 bytes and a newline.
func readRootKey(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		t.Fatalf("key file %s does not hold base64 of 32 bytes (%d bytes, %v)", path, len(key), err)
	}
	return key
}

// keyMaterial unseals, with the root key, every KMS key version's material
// and the fingerprint key stored in the state database at path (read-only,
// after the node stopped), as the layout in storage/kms/DESIGN.md says:
// AES-256-GCM, nonce first, associated data a domain and fields each
// prefixed by its big-endian uint64 length.
func keyMaterial(t *testing.T, path string, root []byte) map[string][]byte {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rec storagev1.Keyring
	if err := db.View(func(tx *bolt.Tx) error {
		return proto.Unmarshal(tx.Bucket([]byte("meta")).Get([]byte("keyring")), &rec)
	}); err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(root)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	ad := func(parts ...string) []byte {
		var out []byte
		for _, p := range parts {
			out = binary.BigEndian.AppendUint64(out, uint64(len(p)))
			out = append(out, p...)
		}
		return out
	}
	open := func(sealed, ad []byte) []byte {
		plain, err := gcm.Open(nil, sealed[:12], sealed[12:], ad)
		if err != nil {
			t.Fatalf("unsealing stored key material with the root key: %v", err)
		}
		return plain
	}
	out := map[string][]byte{"the fingerprint key": open(rec.GetSealedFingerprintKey(), ad("coffer/kms/v1/fingerprint-key"))}
	for _, k := range rec.GetKeys() {
		for _, v := range k.GetVersions() {
			n := strconv.FormatUint(uint64(v.GetVersion()), 10)
			out["key "+k.GetKeyId()+" version "+n] = open(v.GetSealedMaterial(), ad("coffer/kms/v1/key-material", k.GetKeyId(), n))
		}
	}
	return out
}

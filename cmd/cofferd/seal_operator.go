package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"

	"github.com/cofferhq/coffer/storage/kms"
)

// `cofferd operator init` makes a region's seal; `cofferd operator
// migrate-seal` moves an existing root key from a key file to a seal.
// Both run on a node's host, without the node (they write only seal.json).

// pkcs11PINEnv is where `cofferd operator` reads the token's PIN: not a
// flag, which ps would show.
const pkcs11PINEnv = "COFFER_SEAL_PKCS11_PIN"

// operatorUsage is `cofferd operator`'s usage.
const operatorUsage = `usage:
  cofferd operator init --data-dir DIR [--shares 5] [--threshold 3] [--age-recipients FILE]
  cofferd operator init --data-dir DIR --seal pkcs11 --pkcs11-module LIB --pkcs11-token-label T [--pkcs11-key-label K]
  cofferd operator migrate-seal --data-dir DIR --from-key-file FILE --to shamir|pkcs11 [the flags of init]
      (the token's PIN in $` + pkcs11PINEnv + `)`

// runOperator runs `cofferd operator init` and `cofferd operator
// migrate-seal`.
func runOperator(args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 {
		return usageError{errors.New(operatorUsage)}
	}
	switch args[0] {
	case "init":
		return runOperatorInit(args[1:], stdout, stderr, getenv)
	case "migrate-seal":
		return runMigrateSeal(args[1:], stdout, stderr, getenv)
	}
	return usageError{errors.New(operatorUsage)}
}

// newSealFlags are the flags that describe the seal to make.
type newSealFlags struct {
	dataDir, sealType   string
	shares, threshold   int
	pkcs11              PKCS11SealConfig
	keyLabel            string
	recipientsFile      string
	sealFlag, sealUsage string
	recipients          []string // read from recipientsFile by check
}

func (f *newSealFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.dataDir, "data-dir", "", "the node's data directory, where seal.json is written")
	fs.StringVar(&f.sealType, f.sealFlag, "shamir", f.sealUsage)
	fs.IntVar(&f.shares, "shares", 5, "shamir: how many key shares to make")
	fs.IntVar(&f.threshold, "threshold", 3, "shamir: how many shares unseal")
	fs.StringVar(&f.pkcs11.Module, "pkcs11-module", "", "pkcs11: the token's PKCS#11 library")
	fs.StringVar(&f.pkcs11.TokenLabel, "pkcs11-token-label", "", "pkcs11: the token's label")
	fs.StringVar(&f.keyLabel, "pkcs11-key-label", "coffer-root", "pkcs11: the label of the AES key that wraps the root key (made in the token if absent)")
	fs.StringVar(&f.recipientsFile, "age-recipients", "", "shamir: a file of age public keys, one per share in order; each share is printed encrypted to its key")
}

// check validates the flags after parsing; cmd names the command in
// errors.
func (f *newSealFlags) check(cmd string, getenv func(string) string) error {
	if f.dataDir == "" {
		return usageError{fmt.Errorf("%s: --data-dir is required", cmd)}
	}
	f.pkcs11.PIN = getenv(pkcs11PINEnv)
	switch f.sealType {
	case "shamir":
	case "pkcs11":
		if !kms.PKCS11Available {
			return fmt.Errorf("%s: %w", cmd, kms.ErrPKCS11NotBuilt)
		}
		if f.pkcs11.Module == "" || f.pkcs11.TokenLabel == "" {
			return usageError{fmt.Errorf("%s: the pkcs11 seal needs --pkcs11-module and --pkcs11-token-label", cmd)}
		}
	default:
		return usageError{fmt.Errorf("%s: --%s %q: want shamir or pkcs11", cmd, f.sealFlag, f.sealType)}
	}
	if f.recipientsFile != "" {
		if f.sealType != "shamir" {
			return usageError{fmt.Errorf("%s: --age-recipients encrypts key shares: only the shamir seal has them", cmd)}
		}
		var err error
		if f.recipients, err = readRecipientsFile(f.recipientsFile); err != nil {
			return fmt.Errorf("%s: %w", cmd, err)
		}
		if len(f.recipients) != f.shares {
			return usageError{fmt.Errorf("%s: %s holds %d age recipients for %d shares: give one per share, in order", cmd, f.recipientsFile, len(f.recipients), f.shares)}
		}
	}
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if _, err := os.Stat(filepath.Join(f.dataDir, sealFileName)); err == nil {
		return fmt.Errorf("%s: %s exists: this node has a seal already (every node of a region shares one seal: copy its seal.json; coffer operator rekey changes its shares)", cmd, filepath.Join(f.dataDir, sealFileName))
	}
	return nil
}

// seal writes seal.json for root and prints what the operator must keep:
// the shares of a Shamir seal, or where a PKCS#11 seal's key is.
func (f *newSealFlags) seal(root []byte, stdout io.Writer) error {
	desc := &sealFile{Type: f.sealType, Check: base64.StdEncoding.EncodeToString(kms.RootKeyCheck(root))}
	var lines []string
	if f.sealType == "shamir" {
		parts, err := kms.Split(root, f.shares, f.threshold)
		if err != nil {
			return err
		}
		// Encrypt before writing seal.json, so a bad recipient leaves no
		// seal behind.
		if lines, err = shareLines(parts, f.recipients); err != nil {
			return err
		}
		desc.Shares, desc.Threshold = f.shares, f.threshold
	} else {
		wrapped, err := kms.WrapRootKeyPKCS11(pkcs11Config(f.pkcs11, f.keyLabel), root, true)
		if err != nil {
			return err
		}
		desc.KeyLabel, desc.Wrapped = f.keyLabel, base64.StdEncoding.EncodeToString(wrapped)
	}
	if err := writeSealFile(f.dataDir, desc, false); err != nil {
		return err
	}
	path := filepath.Join(f.dataDir, sealFileName)
	if f.sealType == "pkcs11" {
		fmt.Fprintf(stdout, "wrote %s; the root key is wrapped by key %q of PKCS#11 token %q.\n", path, f.keyLabel, f.pkcs11.TokenLabel)
		fmt.Fprintln(stdout, "Back up seal.json and the HSM key (your HSM's backup procedure): without both, the data cannot be decrypted.")
		return nil
	}
	fmt.Fprintf(stdout, "wrote %s; the root key is split into %d shares, %d of which unseal a node.\n", path, f.shares, f.threshold)
	if len(f.recipients) > 0 {
		fmt.Fprintln(stdout, "Each share is encrypted to its age key; its holder enters it with: echo SHARE | base64 -d | age -d -i KEY | coffer operator unseal")
	}
	fmt.Fprintln(stdout, "Give each share to a different person; they are printed once and stored nowhere:")
	for _, l := range lines {
		fmt.Fprintln(stdout, l)
	}
	return nil
}

func parseOperatorFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return usageError{}
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// runOperatorInit makes a new root key and seals it.
func runOperatorInit(args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("cofferd operator init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &newSealFlags{sealFlag: "seal", sealUsage: "the seal: shamir (key shares) or pkcs11 (the root key wrapped by an HSM key)"}
	f.register(fs)
	if err := parseOperatorFlags(fs, args); err != nil {
		return err
	}
	if err := f.check("operator init", getenv); err != nil {
		return err
	}
	root := make([]byte, 32)
	defer clear(root)
	rand.Read(root)
	if err := f.seal(root, stdout); err != nil {
		return fmt.Errorf("operator init: %w", err)
	}
	return nil
}

// runMigrateSeal moves a node's root key from its key file (the file
// seal) to a Shamir or PKCS#11 seal: it reads the key with the old seal and
// seals the same key with the new one, so no data changes. The key file is
// left in place: the operator switches seal.type, restarts the node, and
// only then destroys the file (and its backups).
func runMigrateSeal(args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("cofferd operator migrate-seal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := &newSealFlags{sealFlag: "to", sealUsage: "the new seal: shamir or pkcs11"}
	f.register(fs)
	keyFile := fs.String("from-key-file", "", "the file seal's root key file (seal.key_file)")
	if err := parseOperatorFlags(fs, args); err != nil {
		return err
	}
	if *keyFile == "" {
		return usageError{errors.New("operator migrate-seal: --from-key-file is required (only the file seal migrates: coffer operator rekey changes a Shamir seal's shares)")}
	}
	if err := f.check("operator migrate-seal", getenv); err != nil {
		return err
	}
	root, err := kms.FileSeal{Path: *keyFile}.RootKey()
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return fmt.Errorf("operator migrate-seal: no root key at %s: %w", *keyFile, err)
		}
		return fmt.Errorf("operator migrate-seal: %w", err)
	}
	defer clear(root)
	if err := f.seal(root, stdout); err != nil {
		return fmt.Errorf("operator migrate-seal: %w", err)
	}
	fmt.Fprintf(stdout, "The root key is unchanged: no data is rewritten. Copy seal.json to every node of the region, set seal.type: %s "+
		"(without key_file) and restart the nodes one at a time; once they all run, destroy %s and its backups.\n", f.sealType, *keyFile)
	return nil
}

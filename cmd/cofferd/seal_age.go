package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	"filippo.io/age"
)

// Key shares can be encrypted to age recipients, one per share in order
// (as Vault encrypts them to PGP keys): share i is printed only as an age
// file that recipient i alone can open. What is encrypted is the share's
// base64 text and a newline, so that
//
//	echo ENCRYPTED | base64 -d | age -d -i key.txt | coffer operator unseal
//
// enters it. The plaintext share then exists only on its holder's machine.

// maxRecipientsFile bounds a recipients file (255 shares of a few hundred
// bytes at most).
const maxRecipientsFile = 1 << 20

// readRecipientsFile reads age recipients, one a line, skipping blank
// lines and # comments (age's -R format).
func readRecipientsFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) > maxRecipientsFile {
		return nil, fmt.Errorf("%s is too large for a recipients file", path)
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out, nil
}

// encryptShares encrypts share i to recipients[i] and returns each age
// file, base64; there must be one recipient per share.
func encryptShares(parts [][]byte, recipients []string) ([]string, error) {
	if len(recipients) != len(parts) {
		return nil, fmt.Errorf("%d age recipients for %d shares: give one per share, in order", len(recipients), len(parts))
	}
	out := make([]string, len(parts))
	for i, p := range parts {
		recs, err := age.ParseRecipients(strings.NewReader(recipients[i]))
		if err != nil || len(recs) != 1 {
			return nil, fmt.Errorf("age recipient %d is not an age public key (age1…): %v", i+1, err)
		}
		var buf bytes.Buffer
		w, err := age.Encrypt(&buf, recs[0])
		if err != nil {
			return nil, fmt.Errorf("encrypting share %d: %w", i+1, err)
		}
		text := make([]byte, base64.StdEncoding.EncodedLen(len(p))+1)
		base64.StdEncoding.Encode(text, p)
		text[len(text)-1] = '\n'
		_, err = w.Write(text)
		clear(text)
		if err == nil {
			err = w.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("encrypting share %d: %w", i+1, err)
		}
		out[i] = base64.StdEncoding.EncodeToString(buf.Bytes())
	}
	return out, nil
}

// encodeShares is each share as it is handed out: base64, or the base64
// of an age file when there are recipients. parts are cleared.
func encodeShares(parts [][]byte, recipients []string) ([]string, error) {
	defer func() {
		for _, p := range parts {
			clear(p)
		}
	}()
	if len(recipients) > 0 {
		return encryptShares(parts, recipients)
	}
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = base64.StdEncoding.EncodeToString(p)
	}
	return out, nil
}

// shareLines are the "share N: …" lines of shares, encrypted to
// recipients when there are any; parts are cleared.
func shareLines(parts [][]byte, recipients []string) ([]string, error) {
	enc, err := encodeShares(parts, recipients)
	if err != nil {
		return nil, err
	}
	lines := make([]string, len(enc))
	for i, e := range enc {
		if len(recipients) > 0 {
			lines[i] = fmt.Sprintf("share %d (age, to %s): %s", i+1, recipients[i], e)
		} else {
			lines[i] = fmt.Sprintf("share %d: %s", i+1, e)
		}
	}
	return lines, nil
}

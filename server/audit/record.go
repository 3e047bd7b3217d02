package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"
)

// Record is what the caller knows about one request. It must never hold a
// secret value: parameters that could carry one are passed through
// Log.HashValue first.
type Record struct {
	Time       time.Time // when the request was decided; zero means now
	Node       string    // the node that served it; empty means Config.Node
	RequestID  string
	Principal  string
	SourceAddr string
	Protocol   string // "grpc" or "aws"
	Operation  string
	SecretARN  string
	VersionID  string
	Decision   string // "allow" or "deny"
	Statement  string // the policy statement that decided, if any
	Outcome    string // "success" or "error"
	ErrorType  string
	Params     map[string]string
	// Secrets lists the secrets a request that reads several returned
	// (BatchGetSecretValue), or could not read, one entry each.
	Secrets []SecretRef
}

// SecretRef is one secret a multi-secret request touched: the version it
// returned, or the error it got for that secret.
type SecretRef struct {
	// ARN is the secret's ARN; for a secret that could not be read, the id
	// the caller named (a name, partial ARN or ARN).
	ARN       string `json:"arn"`
	VersionID string `json:"version_id,omitempty"`
	ErrorType string `json:"error_type,omitempty"`
}

// entry is one line of the log. The field order is the line's field order
// and part of the hash: never reorder or rename a field, only add new ones
// before Seq (a new reader then refuses old writers' lines, not the reverse).
type entry struct {
	Time       string            `json:"time"`
	Node       string            `json:"node"`
	RequestID  string            `json:"request_id"`
	Principal  string            `json:"principal"`
	SourceAddr string            `json:"source_addr"`
	Protocol   string            `json:"protocol"`
	Operation  string            `json:"operation"`
	SecretARN  string            `json:"secret_arn"`
	VersionID  string            `json:"version_id"`
	Decision   string            `json:"decision"`
	Statement  string            `json:"statement"`
	Outcome    string            `json:"outcome"`
	ErrorType  string            `json:"error_type"`
	Params     map[string]string `json:"params,omitempty"`
	Secrets    []SecretRef       `json:"secrets,omitempty"`
	Seq        uint64            `json:"seq"`
	Prev       string            `json:"prev"`
	Hash       string            `json:"hash,omitempty"`
}

func newEntry(r Record, node string, seq uint64, prev string) entry {
	if r.Time.IsZero() {
		r.Time = time.Now()
	}
	if r.Node == "" {
		r.Node = node
	}
	var params map[string]string // nil when empty: one encoding for "no parameters"
	if len(r.Params) > 0 {
		params = make(map[string]string, len(r.Params))
		for k, v := range r.Params {
			params[valid(k)] = valid(v)
		}
	}
	var secrets []SecretRef // nil when empty, as params
	for _, ref := range r.Secrets {
		secrets = append(secrets, SecretRef{ARN: valid(ref.ARN), VersionID: valid(ref.VersionID), ErrorType: valid(ref.ErrorType)})
	}
	return entry{
		Time: r.Time.UTC().Format(time.RFC3339Nano), Node: valid(r.Node), RequestID: valid(r.RequestID),
		Principal: valid(r.Principal), SourceAddr: valid(r.SourceAddr), Protocol: valid(r.Protocol),
		Operation: valid(r.Operation), SecretARN: valid(r.SecretARN), VersionID: valid(r.VersionID),
		Decision: valid(r.Decision), Statement: valid(r.Statement), Outcome: valid(r.Outcome),
		ErrorType: valid(r.ErrorType), Params: params, Secrets: secrets, Seq: seq, Prev: prev,
	}
}

// valid replaces invalid UTF-8 with U+FFFD before encoding, as a reader's
// decoder would, so that decoding and re-encoding a line gives its bytes back.
func valid(s string) string {
	return strings.ToValidUTF8(s, "\uFFFD")
}

// seal computes e's hash and returns it with the line to append, newline
// included. The hash is hex(SHA-256(canonical)), where canonical is the
// entry's JSON encoding without the hash member; the line is canonical with
// `,"hash":"<hex>"` spliced in before the closing brace. encoding/json makes
// the encoding canonical: fixed field order, sorted map keys, invalid UTF-8
// replaced, control characters escaped, so no field can break the line.
func seal(e entry) (hash string, line []byte, err error) {
	e.Hash = ""
	canonical, err := json.Marshal(e)
	if err != nil {
		return "", nil, err
	}
	sum := sha256.Sum256(canonical)
	hash = hex.EncodeToString(sum[:])
	line = make([]byte, 0, len(canonical)+len(hash)+12)
	line = append(line, canonical[:len(canonical)-1]...)
	line = append(line, `,"hash":"`...)
	line = append(line, hash...)
	line = append(line, "\"}\n"...)
	return hash, line, nil
}

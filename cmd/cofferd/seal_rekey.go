package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/storage/kms"
)

// runningSeal is the SealService of a running node (node.Options
// SealService, behind the API's authentication): the seal's status, and
// rekeys of the Shamir seal, as Vault's `operator rekey` does, and
// re-wraps of the PKCS#11 seal under another HSM key (rewrap). A rekey
// re-splits the same root key into a new count and threshold of shares
// once the current threshold of shares was given, hands them out, and
// replaces seal.json in this node's data directory once a threshold of the
// new shares was entered back (see rekeyState); no stored data changes, because the root
// key does not. The old shares still combine to the root key (nothing can
// revoke a share of an unchanged key): a rekey changes who can unseal,
// not what an old share holder learnt.
type runningSeal struct {
	cofferv1.UnimplementedSealServiceServer
	dataDir  string
	sealType string
	pkcs11   PKCS11SealConfig // the token of the pkcs11 seal
	log      *slog.Logger

	mu    sync.Mutex
	rekey *rekeyState // nil when no rekey is in progress
}

// rekeyState is one rekey in progress. It runs in two phases, as Vault's
// rekey with verification does: the current threshold of current shares
// gives the root key, which is split anew and the new shares handed out
// (verifying); then new_threshold of the NEW shares must be entered back
// and combine to the root key before seal.json changes. Until then the
// current shares and seal.json stay in force, so new shares lost on the
// way (an answer that never arrived) cost nothing: cancel and start again.
type rekeyState struct {
	nonce                   string // the current phase's
	startedBy               string // principal ARN
	threshold               int    // the current seal's
	newShares, newThreshold int
	recipients              []string // age keys of the new shares, or none
	verifying               bool
	shares                  [][]byte // the phase's shares entered so far
}

// need is how many shares the current phase takes.
func (r *rekeyState) need() int {
	if r.verifying {
		return r.newThreshold
	}
	return r.threshold
}

func (r *rekeyState) clearShares() {
	for _, s := range r.shares {
		clear(s)
	}
	r.shares = nil
}

// Unseal on a running node changes nothing: it is unsealed.
func (s *runningSeal) Unseal(context.Context, *cofferv1.UnsealRequest) (*cofferv1.UnsealResponse, error) {
	resp := &cofferv1.UnsealResponse{}
	if desc, _, err := readSealFile(s.dataDir); err == nil {
		resp.Threshold = int32(desc.Threshold)
	}
	return resp, nil
}

// SealStatus reports the running node unsealed, with seal.json's split
// and the rekey in progress, if any: who started it and where the new
// shares will go, for each holder to check before entering a share.
func (s *runningSeal) SealStatus(context.Context, *cofferv1.SealStatusRequest) (*cofferv1.SealStatusResponse, error) {
	resp := &cofferv1.SealStatusResponse{SealType: s.sealType}
	if s.sealType == "shamir" {
		if desc, _, err := readSealFile(s.dataDir); err == nil {
			resp.Threshold, resp.Shares = int32(desc.Threshold), int32(desc.Shares)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rk := s.rekey; rk != nil {
		resp.Rekey = &cofferv1.RekeyInProgress{Nonce: rk.nonce, StartedBy: rk.startedBy, NewShares: int32(rk.newShares),
			NewThreshold: int32(rk.newThreshold), AgeRecipients: rk.recipients, Verifying: rk.verifying,
			Progress: int32(len(rk.shares)), Threshold: int32(rk.need())}
	}
	return resp, nil
}

// sameNonce compares nonces in constant time.
func sameNonce(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// Rekey runs one step of a rekey (see RekeyRequest).
func (s *runningSeal) Rekey(ctx context.Context, req *cofferv1.RekeyRequest) (*cofferv1.RekeyResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.sealType == "pkcs11" && req.GetNewKeyLabel() != "":
		return s.rewrap(req.GetNewKeyLabel())
	case s.sealType == "pkcs11":
		return nil, rekeyErr(server.TypeInvalidParameter, "the pkcs11 seal has no key shares: give new_key_label (coffer operator rekey --key-label) to re-wrap the root key under another HSM key")
	case s.sealType != "shamir":
		return nil, rekeyErr(server.TypePreconditionNotMet, fmt.Sprintf("this node's seal is %s: it has no shares to rekey (cofferd operator migrate-seal changes the seal)", s.sealType))
	case req.GetNewKeyLabel() != "":
		return nil, rekeyErr(server.TypeInvalidParameter, "new_key_label re-wraps a pkcs11 seal; this node's seal is shamir")
	}
	if req.GetInit() {
		return s.initRekey(int(req.GetNewShares()), int(req.GetNewThreshold()), req.GetAgeRecipients(), server.PrincipalFrom(ctx))
	}
	rk := s.rekey
	switch {
	case rk == nil && req.GetCancel():
		return &cofferv1.RekeyResponse{}, nil
	case rk == nil:
		return nil, rekeyErr(server.TypePreconditionNotMet, "no rekey is in progress: start one with init (coffer operator rekey --init)")
	case !sameNonce(req.GetNonce(), rk.nonce):
		return nil, rekeyErr(server.TypeInvalidParameter, "the nonce does not name the rekey in progress (coffer operator rekey --status shows it)")
	case req.GetCancel():
		rk.clearShares()
		s.rekey = nil
		s.log.Info("rekey cancelled", "by", server.PrincipalFrom(ctx), "started_by", rk.startedBy)
		return &cofferv1.RekeyResponse{}, nil
	case req.GetVerify() && !rk.verifying:
		return nil, rekeyErr(server.TypePreconditionNotMet, "the rekey has not handed out new shares yet: enter a current share (without verify)")
	case !req.GetVerify() && rk.verifying:
		return nil, rekeyErr(server.TypePreconditionNotMet, "the rekey handed out its new shares: enter one of the NEW shares back with verify (coffer operator rekey --verify), or cancel it")
	}
	share, err := base64.StdEncoding.DecodeString(req.GetShare())
	if err != nil || len(share) != 33 {
		return nil, rekeyErr(server.TypeInvalidParameter, "the share is not a key share of this seal")
	}
	for _, have := range rk.shares {
		if have[0] == share[0] {
			return nil, rekeyErr(server.TypeInvalidParameter, "this share was already entered")
		}
	}
	rk.shares = append(rk.shares, share)
	if len(rk.shares) < rk.need() {
		return s.rekeyResponse(), nil
	}
	if rk.verifying {
		return s.finishRekey(rk)
	}
	return s.handOut(rk)
}

func (s *runningSeal) initRekey(n, t int, recipients []string, by string) (*cofferv1.RekeyResponse, error) {
	if s.rekey != nil {
		return nil, rekeyErr(server.TypePreconditionNotMet, "a rekey is in progress: cancel it first (coffer operator rekey --cancel)")
	}
	if t < 2 || n < t || n > 255 {
		return nil, rekeyErr(server.TypeInvalidParameter, fmt.Sprintf("need 2 <= threshold (%d) <= shares (%d) <= 255", t, n))
	}
	if len(recipients) > 0 {
		// Check the keys now, not after the holders entered their shares.
		if _, err := encryptShares(make([][]byte, n), recipients); err != nil {
			return nil, rekeyErr(server.TypeInvalidParameter, err.Error())
		}
	}
	desc, _, err := readSealFile(s.dataDir)
	if err != nil {
		s.log.Error("rekey: reading the seal description", "err", err)
		return nil, rekeyErr(server.TypePreconditionNotMet, "this node's seal description (seal.json) cannot be read; see the node's log")
	}
	s.rekey = &rekeyState{nonce: newNonce(), startedBy: by, threshold: desc.Threshold, newShares: n, newThreshold: t, recipients: recipients}
	s.log.Info("rekey started", "by", by, "new_shares", n, "new_threshold", t, "age_recipients", len(recipients))
	return s.rekeyResponse(), nil
}

func newNonce() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *runningSeal) rekeyResponse() *cofferv1.RekeyResponse {
	rk := s.rekey
	return &cofferv1.RekeyResponse{Nonce: rk.nonce, Progress: int32(len(rk.shares)), Threshold: int32(rk.threshold),
		NewShares: int32(rk.newShares), NewThreshold: int32(rk.newThreshold), AgeRecipients: rk.recipients,
		VerificationRequired: rk.verifying, StartedBy: rk.startedBy}
}

// combine reads seal.json and combines the phase's shares, which are
// discarded whatever the outcome, into the root key; wrong is the caller's
// answer when they do not give it.
func (s *runningSeal) combine(rk *rekeyState, wrong string) (*sealFile, []byte, error) {
	desc, check, err := readSealFile(s.dataDir)
	if err != nil {
		rk.clearShares()
		s.log.Error("rekey: reading the seal description", "err", err)
		return nil, nil, rekeyErr(server.TypePreconditionNotMet, "this node's seal description (seal.json) cannot be read; see the node's log")
	}
	root, err := kms.CombineRootKey(rk.shares, check)
	rk.clearShares()
	if err != nil {
		s.log.Warn("rekey: the shares entered do not combine to the root key; enter them again", "verifying", rk.verifying)
		return nil, nil, rekeyErr(server.TypeInvalidRequest, wrong)
	}
	return desc, root, nil
}

// handOut combines the current shares and, if they give the root key,
// splits it anew and hands the new shares out; seal.json does not change
// yet (finishRekey). Shares that do not combine are all discarded (the
// rekey stays, for them to be entered again).
func (s *runningSeal) handOut(rk *rekeyState) (*cofferv1.RekeyResponse, error) {
	_, root, err := s.combine(rk, "the shares do not combine to this seal's root key: one of them is wrong; all were discarded, enter them again")
	if err != nil {
		return nil, err
	}
	parts, err := kms.Split(root, rk.newShares, rk.newThreshold)
	clear(root)
	if err != nil {
		return nil, rekeyErr(server.TypeInvalidParameter, fmt.Sprintf("%v", err))
	}
	newShares, err := encodeShares(parts, rk.recipients)
	for _, p := range parts {
		clear(p)
	}
	if err != nil {
		return nil, rekeyErr(server.TypeInvalidParameter, err.Error())
	}
	rk.verifying, rk.nonce = true, newNonce()
	resp := s.rekeyResponse()
	resp.NewKeyShares = newShares
	s.log.Info("rekey: new shares handed out; seal.json changes once enough of them are entered back (verify)",
		"new_shares", rk.newShares, "new_threshold", rk.newThreshold)
	return resp, nil
}

// finishRekey combines the new shares entered back and, if they give the
// root key, writes the new seal.json. Shares that do not combine are all
// discarded (the rekey stays verifying, for them to be entered again).
func (s *runningSeal) finishRekey(rk *rekeyState) (*cofferv1.RekeyResponse, error) {
	desc, root, err := s.combine(rk, "the new shares do not combine to this seal's root key: one of them is wrong; all were discarded, enter them again (the current seal stays in force)")
	if err != nil {
		return nil, err
	}
	clear(root)
	next := &sealFile{Type: "shamir", Shares: rk.newShares, Threshold: rk.newThreshold, Check: desc.Check}
	if err := writeSealFile(s.dataDir, next, true); err != nil {
		s.log.Error("rekey: writing the new seal description; the current shares stay valid", "err", err)
		return nil, rekeyErr(server.TypeInternalServiceError, "the new seal description could not be written (see the node's log); the current shares stay valid")
	}
	resp := s.rekeyResponse()
	resp.Complete, resp.Progress, resp.VerificationRequired = true, 0, false
	s.rekey = nil
	s.log.Info("rekeyed the shamir seal: the new shares were verified and seal.json written; copy it to the region's other nodes",
		"shares", rk.newShares, "threshold", rk.newThreshold, "started_by", rk.startedBy)
	return resp, nil
}

// rewrap has the token unwrap the root key and wrap it again under the
// key labelled label (made if absent), checks the new wrapping unwraps to
// the same key, and replaces seal.json. The old HSM key is left in the
// token: the region's other nodes use it until they get the new seal.json.
func (s *runningSeal) rewrap(label string) (*cofferv1.RekeyResponse, error) {
	desc, check, err := readSealFile(s.dataDir)
	if err != nil {
		s.log.Error("rekey: reading the seal description", "err", err)
		return nil, rekeyErr(server.TypePreconditionNotMet, "this node's seal description (seal.json) cannot be read; see the node's log")
	}
	if label == desc.KeyLabel {
		return nil, rekeyErr(server.TypeInvalidParameter, fmt.Sprintf("the root key is wrapped by key %q already", label))
	}
	root, err := pkcs11RootKey(s.dataDir, s.pkcs11)
	if err != nil {
		s.log.Error("rekey: unwrapping the root key", "err", err)
		return nil, rekeyErr(server.TypeInternalServiceError, "the HSM did not unwrap the root key; see the node's log")
	}
	defer clear(root)
	cfg := pkcs11Config(s.pkcs11, label)
	wrapped, err := kms.WrapRootKeyPKCS11(cfg, root, true)
	if err == nil {
		var again []byte
		if again, err = (kms.PKCS11Seal{Config: cfg, Wrapped: wrapped}).RootKey(); err == nil && !bytes.Equal(again, root) {
			err = errors.New("the new wrapping does not unwrap to the root key")
		}
		clear(again)
	}
	if err != nil {
		s.log.Error("rekey: wrapping the root key under the new HSM key", "key_label", label, "err", err)
		return nil, rekeyErr(server.TypeInternalServiceError, "the HSM could not wrap the root key under the new key; see the node's log")
	}
	next := &sealFile{Type: "pkcs11", KeyLabel: label, Wrapped: base64.StdEncoding.EncodeToString(wrapped), Check: base64.StdEncoding.EncodeToString(check)}
	if err := writeSealFile(s.dataDir, next, true); err != nil {
		s.log.Error("rekey: writing the new seal description; the current one stays", "err", err)
		return nil, rekeyErr(server.TypeInternalServiceError, "the new seal description could not be written (see the node's log); the current one stays")
	}
	s.log.Info("re-wrapped the root key under another HSM key; copy seal.json to the region's other nodes", "old_key_label", desc.KeyLabel, "key_label", label)
	return &cofferv1.RekeyResponse{Complete: true, KeyLabel: label}, nil
}

var _ cofferv1.SealServiceServer = (*runningSeal)(nil)

// rekeyErr is an error as the API's callers see them (the API's
// interceptor renders server.APIError; anything else would be an
// InternalServiceError).
func rekeyErr(typ, msg string) error { return &server.APIError{Type: typ, Message: msg} }

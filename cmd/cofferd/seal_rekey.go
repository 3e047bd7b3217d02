package main

import (
	"bytes"
	"context"
	"crypto/rand"
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
// once the current threshold of shares was given, and replaces seal.json
// in this node's data directory; no stored data changes, because the root
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

// rekeyState is one rekey in progress.
type rekeyState struct {
	nonce                   string
	threshold               int // the current seal's
	newShares, newThreshold int
	recipients              []string // age keys of the new shares, or none
	shares                  [][]byte
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

// SealStatus reports the running node unsealed, with seal.json's split.
func (s *runningSeal) SealStatus(context.Context, *cofferv1.SealStatusRequest) (*cofferv1.SealStatusResponse, error) {
	resp := &cofferv1.SealStatusResponse{SealType: s.sealType}
	if s.sealType == "shamir" {
		if desc, _, err := readSealFile(s.dataDir); err == nil {
			resp.Threshold, resp.Shares = int32(desc.Threshold), int32(desc.Shares)
		}
	}
	return resp, nil
}

// Rekey runs one step of a rekey (see RekeyRequest).
func (s *runningSeal) Rekey(_ context.Context, req *cofferv1.RekeyRequest) (*cofferv1.RekeyResponse, error) {
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
	switch {
	case req.GetCancel():
		if s.rekey != nil {
			s.rekey.clearShares()
			s.rekey = nil
			s.log.Info("rekey cancelled")
		}
		return &cofferv1.RekeyResponse{}, nil
	case req.GetInit():
		return s.initRekey(int(req.GetNewShares()), int(req.GetNewThreshold()), req.GetAgeRecipients())
	}
	rk := s.rekey
	if rk == nil {
		return nil, rekeyErr(server.TypePreconditionNotMet, "no rekey is in progress: start one with init (coffer operator rekey --init)")
	}
	if req.GetNonce() != rk.nonce {
		return nil, rekeyErr(server.TypeInvalidParameter, "the nonce does not name the rekey in progress")
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
	resp := s.rekeyResponse()
	if len(rk.shares) < rk.threshold {
		return resp, nil
	}
	return s.finishRekey(rk)
}

func (s *runningSeal) initRekey(n, t int, recipients []string) (*cofferv1.RekeyResponse, error) {
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
	nonce := make([]byte, 16)
	rand.Read(nonce)
	s.rekey = &rekeyState{nonce: hex.EncodeToString(nonce), threshold: desc.Threshold, newShares: n, newThreshold: t, recipients: recipients}
	s.log.Info("rekey started", "new_shares", n, "new_threshold", t)
	return s.rekeyResponse(), nil
}

func (s *runningSeal) rekeyResponse() *cofferv1.RekeyResponse {
	rk := s.rekey
	return &cofferv1.RekeyResponse{Nonce: rk.nonce, Progress: int32(len(rk.shares)), Threshold: int32(rk.threshold),
		NewShares: int32(rk.newShares), NewThreshold: int32(rk.newThreshold), AgeRecipients: rk.recipients}
}

// finishRekey combines the shares and, if they give the root key, splits
// it anew and replaces seal.json. Shares that do not combine are all
// discarded (the rekey stays, for them to be entered again).
func (s *runningSeal) finishRekey(rk *rekeyState) (*cofferv1.RekeyResponse, error) {
	desc, check, err := readSealFile(s.dataDir)
	if err != nil {
		rk.clearShares()
		s.log.Error("rekey: reading the seal description", "err", err)
		return nil, rekeyErr(server.TypePreconditionNotMet, "this node's seal description (seal.json) cannot be read; see the node's log")
	}
	root, err := kms.CombineRootKey(rk.shares, check)
	rk.clearShares()
	if err != nil {
		s.log.Warn("rekey: the shares entered do not combine to this seal's root key; enter them again")
		return nil, rekeyErr(server.TypeInvalidRequest, "the shares do not combine to this seal's root key: one of them is wrong; all were discarded, enter them again")
	}
	parts, err := kms.Split(root, rk.newShares, rk.newThreshold)
	clear(root)
	if err != nil {
		return nil, rekeyErr(server.TypeInvalidParameter, fmt.Sprintf("%v", err))
	}
	newShares, err := encodeShares(parts, rk.recipients)
	if err != nil {
		return nil, rekeyErr(server.TypeInvalidParameter, err.Error())
	}
	next := &sealFile{Type: "shamir", Shares: rk.newShares, Threshold: rk.newThreshold, Check: desc.Check}
	if err := writeSealFile(s.dataDir, next, true); err != nil {
		s.log.Error("rekey: writing the new seal description; the current shares stay valid", "err", err)
		return nil, rekeyErr(server.TypeInternalServiceError, "the new seal description could not be written (see the node's log); the current shares stay valid")
	}
	resp := s.rekeyResponse()
	resp.Complete, resp.Progress, resp.NewKeyShares = true, 0, newShares
	s.rekey = nil
	s.log.Info("rekeyed the shamir seal: the root key is split anew; copy seal.json to the region's other nodes",
		"shares", rk.newShares, "threshold", rk.newThreshold)
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

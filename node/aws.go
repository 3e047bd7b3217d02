package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/awsjson"
	"github.com/cofferhq/coffer/server/sigv4"
	"github.com/cofferhq/coffer/server/sts"
)

// sigv4Auth authenticates AWS API requests with SigV4 against the region's
// access keys and temporary credentials (whose token arrives as
// X-Amz-Security-Token, as AWS SDKs send AWS_SESSION_TOKEN). Only
// credentials scoped to this region are accepted.
type sigv4Auth struct {
	verifier *sigv4.Verifier
	iam      *server.IAM
	region   string
	// refuse, when it returns an error, refuses every request before it is
	// authenticated (a node marked diverged).
	refuse func() error
}

func newSigV4Auth(iam *server.IAM, region, service string, refuse func() error) *sigv4Auth {
	return &sigv4Auth{region: region, iam: iam, refuse: refuse, verifier: &sigv4.Verifier{Service: service, Lookup: iam.SigV4Lookup}}
}

func (a *sigv4Auth) Authenticate(ctx context.Context, r *http.Request, body []byte) (string, error) {
	id, err := a.AuthenticateSTS(ctx, r, body)
	return id.Principal, err
}

// AuthenticateSTS verifies the request and returns the caller's identity
// with the access key it signed with.
func (a *sigv4Auth) AuthenticateSTS(ctx context.Context, r *http.Request, body []byte) (server.Identity, error) {
	if err := a.refuse(); err != nil {
		return server.Identity{}, err
	}
	creds, region, err := a.verifier.Verify(ctx, r, body)
	if err != nil {
		var se *sigv4.Error
		if errors.As(err, &se) {
			return server.Identity{}, &server.APIError{Type: se.Code, Message: se.Message}
		}
		return server.Identity{}, err
	}
	if region != a.region {
		return server.Identity{}, &server.APIError{Type: server.TypeInvalidSignature,
			Message: fmt.Sprintf("Credential should be scoped to a valid region. This endpoint serves %s, not '%s'.", a.region, region)}
	}
	// Expiry is judged after the signature, so only the holder of the
	// secret learns that the credentials are merely expired.
	k, err := a.iam.LookupKey(ctx, creds.AccessKeyID)
	if err != nil {
		return server.Identity{}, err
	}
	if a.iam.Expired(k) {
		return server.Identity{}, &server.APIError{Type: server.TypeExpiredToken, Message: "The security token included in the request is expired"}
	}
	return server.Identity{Principal: creds.Principal, AccessKeyID: creds.AccessKeyID, Session: !k.Expiration.IsZero()}, nil
}

// startAWS serves the AWS Secrets Manager protocol on opts.AWSAddr.
func (n *Node) startAWS() error {
	lis, err := net.Listen("tcp", n.opts.AWSAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", n.opts.AWSAddr, err)
	}
	sm := &awsjson.Handler{Service: n.svc, Auth: newSigV4Auth(n.iam, n.opts.Service.Region, "secretsmanager", n.refuseDiverged), Logger: n.log, Gate: n.gate}
	st := &sts.Handler{IAM: n.iam, Auth: newSigV4Auth(n.iam, n.opts.Service.Region, "sts", n.refuseDiverged), Gate: n.gate, Logger: n.log}
	km := &awsjson.Handler{Keys: n.keys, Auth: newSigV4Auth(n.iam, n.opts.Service.Region, "kms", n.refuseDiverged), Logger: n.log, Gate: n.gate}
	// One endpoint serves all three: STS Query requests are form posts with
	// no X-Amz-Target; KMS's JSON protocol targets TrentService.*;
	// everything else is Secrets Manager's JSON protocol.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sts.IsRequest(r) {
			st.ServeHTTP(w, r)
			return
		}
		if strings.HasPrefix(r.Header.Get("X-Amz-Target"), awsjson.KMSTargetPrefix) {
			km.ServeHTTP(w, r)
			return
		}
		sm.ServeHTTP(w, r)
	})
	if n.region != nil {
		// One endpoint for every paired region: a request signed for
		// another region goes to it over the region link (mutual TLS,
		// paired CAs only) and is authenticated, authorized and audited
		// there, from its original signature.
		n.region.SetAWSHandler(h)
		h = n.forwardByScope(h)
	}
	lim := n.opts.Limits
	n.aws = &http.Server{
		Handler: n.withHealth(h), TLSConfig: n.opts.AWSTLS,
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: lim.HTTPReadTimeout, WriteTimeout: lim.HTTPWriteTimeout,
		IdleTimeout: lim.HTTPIdleTimeout, MaxHeaderBytes: lim.HTTPMaxHeaderBytes,
	}
	n.awsLis = lis
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		var err error
		limited := server.LimitConnections(lis, lim.ConnectionsPerSource)
		if n.opts.AWSTLS != nil {
			err = n.aws.ServeTLS(limited, "", "")
		} else {
			err = n.aws.Serve(limited)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("AWS API server stopped", "err", err)
		}
	}()
	return nil
}

// AWSAddr is the AWS API listener's address, or "" when it is off.
func (n *Node) AWSAddr() string {
	if n.awsLis == nil {
		return ""
	}
	return n.awsLis.Addr().String()
}

func (n *Node) stopAWS() {
	if n.aws == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = n.aws.Shutdown(ctx)
}

// forwardByScope serves local requests with local, and forwards one whose
// SigV4 credential scope names another, paired region to that region.
func (n *Node) forwardByScope(local http.Handler) http.HandlerFunc {
	own := n.opts.Service.Region
	return func(w http.ResponseWriter, r *http.Request) {
		dest := sigv4.ScopeRegion(r)
		if dest == "" || dest == own || !n.region.Paired(dest) {
			local.ServeHTTP(w, r)
			return
		}
		limit := int64(awsjson.DefaultMaxBodyBytes)
		if r.ContentLength > limit {
			local.ServeHTTP(w, r) // answered there as too large
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
		if err != nil {
			writeAWSError(w, http.StatusRequestEntityTooLarge, awsjson.TypeRequestTooLarge, "The request body could not be read.")
			return
		}
		if err := n.region.ForwardAWS(r.Context(), dest, w, r, body); err != nil {
			n.log.Warn("forwarding an AWS request to its region failed", "region", dest, "err", err)
			w.Header().Set("Retry-After", "1")
			writeAWSError(w, http.StatusServiceUnavailable, server.TypeServiceUnavailable,
				fmt.Sprintf("Region %s, which the request is signed for, cannot be reached from this endpoint; retry.", dest))
		}
	}
}

// writeAWSError answers in the AWS JSON protocol's error shape, for the
// failures of forwarding itself.
func writeAWSError(w http.ResponseWriter, status int, typ, msg string) {
	b, _ := json.Marshal(map[string]string{"__type": typ, "message": msg})
	w.Header().Set("Content-Type", awsjson.ContentType)
	w.Header()[awsjson.ErrorTypeHeader] = []string{typ}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

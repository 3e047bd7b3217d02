package sts

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/awserr"
)

// Namespace is the XML namespace of every STS response.
const Namespace = "https://sts.amazonaws.com/doc/2011-06-15/"

// Version is the only STS API version.
const Version = "2011-06-15"

// maxBody bounds a request body; STS requests are a few form fields.
const maxBody = 64 << 10

// Authenticator verifies a SigV4 request signed for STS and returns the
// caller's identity (principal and the access key it signed with).
type Authenticator interface {
	AuthenticateSTS(ctx context.Context, r *http.Request, body []byte) (server.Identity, error)
}

// IAM is what the handler calls: the IAM service.
type IAM interface {
	GetSessionToken(context.Context, *cofferv1.GetSessionTokenRequest) (*cofferv1.GetSessionTokenResponse, error)
	GetCallerIdentity(context.Context, *cofferv1.GetCallerIdentityRequest) (*cofferv1.GetCallerIdentityResponse, error)
	AssumeRole(context.Context, *cofferv1.AssumeRoleRequest) (*cofferv1.AssumeRoleResponse, error)
	AssumeRoleWithWebIdentity(context.Context, *cofferv1.AssumeRoleWithWebIdentityRequest) (*cofferv1.AssumeRoleResponse, error)
}

// Handler serves the STS Query protocol.
type Handler struct {
	IAM    IAM
	Auth   Authenticator
	Gate   *server.Gate
	Logger *slog.Logger
}

// IsRequest reports whether r is an STS Query request rather than an AWS
// JSON one: a form body and no X-Amz-Target.
func IsRequest(r *http.Request) bool {
	if r.Header.Get("X-Amz-Target") != "" {
		return false
	}
	ct := r.Header.Get("Content-Type")
	return len(ct) >= 33 && ct[:33] == "application/x-www-form-urlencoded"
}

type credentials struct {
	AccessKeyID     string `xml:"AccessKeyId"`
	SecretAccessKey string `xml:"SecretAccessKey"`
	SessionToken    string `xml:"SessionToken"`
	Expiration      string `xml:"Expiration"`
}

type responseMetadata struct {
	RequestID string `xml:"RequestId"`
}

type getSessionTokenResponse struct {
	XMLName  xml.Name         `xml:"GetSessionTokenResponse"`
	XMLNS    string           `xml:"xmlns,attr"`
	Result   credentialsBlock `xml:"GetSessionTokenResult"`
	Metadata responseMetadata `xml:"ResponseMetadata"`
}

type credentialsBlock struct {
	Credentials credentials `xml:"Credentials"`
}

type getCallerIdentityResponse struct {
	XMLName xml.Name `xml:"GetCallerIdentityResponse"`
	XMLNS   string   `xml:"xmlns,attr"`
	Result  struct {
		Arn     string `xml:"Arn"`
		UserID  string `xml:"UserId"`
		Account string `xml:"Account"`
	} `xml:"GetCallerIdentityResult"`
	Metadata responseMetadata `xml:"ResponseMetadata"`
}

type assumedRoleUser struct {
	Arn           string `xml:"Arn"`
	AssumedRoleID string `xml:"AssumedRoleId"`
}

type assumeRoleResponse struct {
	XMLName xml.Name `xml:"AssumeRoleResponse"`
	XMLNS   string   `xml:"xmlns,attr"`
	Result  struct {
		Credentials     credentials     `xml:"Credentials"`
		AssumedRoleUser assumedRoleUser `xml:"AssumedRoleUser"`
	} `xml:"AssumeRoleResult"`
	Metadata responseMetadata `xml:"ResponseMetadata"`
}

type assumeRoleWithWebIdentityResponse struct {
	XMLName xml.Name `xml:"AssumeRoleWithWebIdentityResponse"`
	XMLNS   string   `xml:"xmlns,attr"`
	Result  struct {
		Credentials                 credentials     `xml:"Credentials"`
		SubjectFromWebIdentityToken string          `xml:"SubjectFromWebIdentityToken"`
		AssumedRoleUser             assumedRoleUser `xml:"AssumedRoleUser"`
		Provider                    string          `xml:"Provider"`
		Audience                    string          `xml:"Audience"`
	} `xml:"AssumeRoleWithWebIdentityResult"`
	Metadata responseMetadata `xml:"ResponseMetadata"`
}

type errorResponse struct {
	XMLName xml.Name `xml:"ErrorResponse"`
	XMLNS   string   `xml:"xmlns,attr"`
	Error   struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	} `xml:"Error"`
	RequestID string `xml:"RequestId"`
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := uuid.NewString()
	w.Header().Set("x-amzn-RequestId", id)
	ctx := server.WithRequestID(r.Context(), id)
	call := server.Call{Protocol: "aws", SourceAddr: r.RemoteAddr,
		Caller: server.Caller{SourceIP: server.HostOf(r.RemoteAddr), SecureTransport: r.TLS != nil}}
	fail := func(err error) {
		ae := server.AsAPIError(err)
		if ae.Type == server.TypeInternalServiceError {
			h.logger().Error("sts request failed", "request_id", id, "operation", call.Operation, "cause", errors.Unwrap(ae))
		}
		writeError(w, id, ae)
	}
	// A starting node answers 503 before it authenticates (see
	// server.Gate.Ready); SDKs retry it.
	if e := h.Gate.NotReady(); e != nil {
		w.Header().Set("Retry-After", "1")
		fail(e)
		return
	}
	// A source whose requests keep failing to authenticate is refused
	// before its body is read.
	if err := h.Gate.Throttle(ctx, call); err != nil {
		fail(err)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		fail(h.Gate.Refused(ctx, call, &server.APIError{Type: awserr.InvalidAction, Message: "STS requests are POST / with a form body."}))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		fail(h.Gate.Refused(ctx, call, &server.APIError{Type: server.TypeValidation, Message: "The request body could not be read."}))
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		fail(h.Gate.Refused(ctx, call, &server.APIError{Type: server.TypeValidation, Message: "The request body is not a valid form."}))
		return
	}
	action := form.Get("Action")
	call.Operation = operationName(action)
	call.Action = "coffer:" + call.Operation
	switch call.Operation {
	case "AssumeRole":
		call.Action = server.ActionAssumeRole
	case "AssumeRoleWithWebIdentity":
		call.Action = server.ActionAssumeRoleWithWebIdentity
	}
	// AssumeRoleWithWebIdentity is unsigned, as in AWS: its token is the
	// credential (a signature, if any, is ignored).
	if call.Operation != "AssumeRoleWithWebIdentity" {
		ident, err := h.Auth.AuthenticateSTS(ctx, r, body)
		if err != nil {
			fail(h.Gate.Refused(ctx, call, err))
			return
		}
		call.Caller.Principal, call.Caller.AccessKeyID, call.Caller.Session = ident.Principal, ident.AccessKeyID, ident.Session
		ctx = server.WithIdentity(ctx, ident)
	}
	duration := func() (int32, bool) {
		v := form.Get("DurationSeconds")
		if v == "" {
			return 0, true
		}
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil {
			fail(h.Gate.Refused(ctx, call, &server.APIError{Type: server.TypeValidation, Message: "DurationSeconds must be a whole number of seconds."}))
			return 0, false
		}
		return int32(n), true
	}

	var req proto.Message
	switch call.Operation {
	case "GetSessionToken":
		in := &cofferv1.GetSessionTokenRequest{}
		if v := form.Get("DurationSeconds"); v != "" {
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil {
				fail(h.Gate.Refused(ctx, call, &server.APIError{Type: server.TypeValidation, Message: "DurationSeconds must be a whole number of seconds."}))
				return
			}
			in.DurationSeconds = int32(n)
		}
		req = in
	case "GetCallerIdentity":
		req = &cofferv1.GetCallerIdentityRequest{}
	case "AssumeRole":
		d, ok := duration()
		if !ok {
			return
		}
		req = &cofferv1.AssumeRoleRequest{RoleArn: form.Get("RoleArn"), RoleSessionName: form.Get("RoleSessionName"), DurationSeconds: d}
	case "AssumeRoleWithWebIdentity":
		d, ok := duration()
		if !ok {
			return
		}
		req = &cofferv1.AssumeRoleWithWebIdentityRequest{RoleArn: form.Get("RoleArn"), RoleSessionName: form.Get("RoleSessionName"),
			DurationSeconds: d, WebIdentityToken: form.Get("WebIdentityToken")}
	default:
		fail(h.Gate.Refused(ctx, call, &server.APIError{Type: awserr.InvalidAction,
			Message: "Could not find operation " + truncate(action) + " for version " + truncate(form.Get("Version")) + ": this endpoint serves GetSessionToken, GetCallerIdentity, AssumeRole and AssumeRoleWithWebIdentity."}))
		return
	}
	call.Request = req
	ctx, x, err := h.Gate.Begin(ctx, call)
	if err != nil {
		fail(err)
		return
	}
	var out any
	// Serve records the request (a panic too, which net/http then
	// recovers) before anything is written back.
	_, err = x.Serve(func() (proto.Message, error) {
		switch in := req.(type) {
		case *cofferv1.GetSessionTokenRequest:
			r, err := h.IAM.GetSessionToken(ctx, in)
			if err != nil {
				return nil, err
			}
			out = &getSessionTokenResponse{XMLNS: Namespace, Metadata: responseMetadata{RequestID: id},
				Result: credentialsBlock{Credentials: credentials{AccessKeyID: r.GetAccessKeyId(), SecretAccessKey: r.GetSecretAccessKey(),
					SessionToken: r.GetSessionToken(), Expiration: r.GetExpiration().AsTime().UTC().Format(time.RFC3339)}}}
			return r, nil
		case *cofferv1.GetCallerIdentityRequest:
			r, err := h.IAM.GetCallerIdentity(ctx, in)
			if err != nil {
				return nil, err
			}
			o := &getCallerIdentityResponse{XMLNS: Namespace, Metadata: responseMetadata{RequestID: id}}
			o.Result.Arn, o.Result.Account, o.Result.UserID = r.GetArn(), r.GetAccount(), r.GetAccessKeyId()
			out = o
			return r, nil
		case *cofferv1.AssumeRoleRequest:
			r, err := h.IAM.AssumeRole(ctx, in)
			if err != nil {
				return nil, err
			}
			o := &assumeRoleResponse{XMLNS: Namespace, Metadata: responseMetadata{RequestID: id}}
			o.Result.Credentials = credentialsOf(r)
			o.Result.AssumedRoleUser = assumedRoleUser{Arn: r.GetAssumedRoleArn(), AssumedRoleID: r.GetAssumedRoleId()}
			out = o
			return r, nil
		case *cofferv1.AssumeRoleWithWebIdentityRequest:
			r, err := h.IAM.AssumeRoleWithWebIdentity(ctx, in)
			if err != nil {
				return nil, err
			}
			o := &assumeRoleWithWebIdentityResponse{XMLNS: Namespace, Metadata: responseMetadata{RequestID: id}}
			o.Result.Credentials = credentialsOf(r)
			o.Result.AssumedRoleUser = assumedRoleUser{Arn: r.GetAssumedRoleArn(), AssumedRoleID: r.GetAssumedRoleId()}
			o.Result.SubjectFromWebIdentityToken, o.Result.Provider, o.Result.Audience = r.GetSubjectFromWebIdentityToken(), r.GetProvider(), r.GetAudience()
			out = o
			return r, nil
		}
		return nil, fmt.Errorf("sts: no handler for %T", req)
	})
	if err != nil {
		fail(err)
		return
	}
	writeXML(w, http.StatusOK, out)
}

func credentialsOf(r *cofferv1.AssumeRoleResponse) credentials {
	return credentials{AccessKeyID: r.GetAccessKeyId(), SecretAccessKey: r.GetSecretAccessKey(),
		SessionToken: r.GetSessionToken(), Expiration: r.GetExpiration().AsTime().UTC().Format(time.RFC3339)}
}

// operationName is the form's Action as an audit record and a log line
// name the operation: the name when it looks like one (letters and
// digits, at most 64), else "" — the raw field is the caller's, of any
// length and content.
func operationName(action string) string {
	if len(action) == 0 || len(action) > 64 {
		return ""
	}
	for i, c := range action {
		letter := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return ""
		}
	}
	return action
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// writeError answers e in the Query protocol: its STS code and the
// status the AWS protocols give its type, as a Sender fault, or a Receiver
// one when the fault is the service's.
func writeError(w http.ResponseWriter, id string, e *server.APIError) {
	out := errorResponse{XMLNS: Namespace, RequestID: id}
	st := awserr.HTTPStatus(e.Type)
	out.Error.Type, out.Error.Code, out.Error.Message = "Sender", awserr.QueryCode(e.Type), e.Message
	if st >= 500 {
		out.Error.Type = "Receiver"
	}
	writeXML(w, st, out)
}

func writeXML(w http.ResponseWriter, status int, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`<ErrorResponse xmlns="` + Namespace + `"><Error><Type>Receiver</Type><Code>InternalFailure</Code></Error></ErrorResponse>`)
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(xml.Header)+len(b)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, xml.Header)
	_, _ = w.Write(b)
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

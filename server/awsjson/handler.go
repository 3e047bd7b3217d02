package awsjson

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/awserr"
)

// Wire constants of the awsJson1_1 protocol.
const (
	// TargetPrefix is the X-Amz-Target prefix of every Secrets Manager operation.
	TargetPrefix = "secretsmanager."
	// KMSTargetPrefix is the X-Amz-Target prefix of every AWS KMS operation.
	KMSTargetPrefix = "TrentService."
	// ContentType is the media type of every response.
	ContentType = "application/x-amz-json-1.1"
	// RequestIDHeader carries the request id, spelled as AWS spells it.
	RequestIDHeader = "x-amzn-RequestId"
	// ErrorTypeHeader carries an error's type; SDKs read it before the body.
	ErrorTypeHeader = "X-Amzn-ErrorType"
	// DefaultMaxBodyBytes bounds a request body when Handler.MaxBodyBytes is 0.
	// A 64 KiB secret escaped as \u00XX is under 400 KiB.
	DefaultMaxBodyBytes = 1 << 20
)

// Error types of the protocol layer itself, beyond server's AWS types.
// awserr defines them, with their HTTP statuses.
const (
	TypeUnknownOperation = awserr.UnknownOperation
	TypeSerialization    = awserr.Serialization
	TypeRequestTooLarge  = awserr.RequestTooLarge
)

// Authenticator authenticates an HTTP request. It returns the caller's
// principal name, or an error, preferably a *server.APIError such as
// UnrecognizedClientException or InvalidSignatureException, which the caller
// is shown. body is the full request body, for payload signing.
type Authenticator interface {
	Authenticate(ctx context.Context, r *http.Request, body []byte) (principal string, err error)
}

// Handler serves the AWS Secrets Manager JSON protocol (awsJson1_1) over
// HTTP, answering every operation with Service.
type Handler struct {
	// Service answers the operations; it is the same service the gRPC API serves.
	Service cofferv1.SecretsManagerServiceServer
	// Keys, when set, makes this the AWS KMS handler instead: it answers
	// TrentService.* operations with the KeyService (and Service is unused).
	Keys cofferv1.KeyServiceServer
	// Auth authenticates every request. A Handler without one refuses all
	// requests: it never serves unauthenticated callers by accident.
	Auth Authenticator
	// Logger receives one line per request; nil means slog.Default().
	Logger *slog.Logger
	// MaxBodyBytes bounds a request body; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Gate authorizes each authenticated request and audits every request;
	// nil does neither (tests of the protocol layer).
	Gate *server.Gate
}

type principalKey struct{}

// PrincipalFrom returns the authenticated principal the handler stored in
// ctx, or "" outside an authenticated request.
func PrincipalFrom(ctx context.Context) string {
	p, _ := ctx.Value(principalKey{}).(string)
	return p
}

// exchange is one request and what the log line says about it.
type exchange struct {
	w         http.ResponseWriter
	id        string
	operation string
	principal string
	status    int
	errType   string
	cause     error
	written   bool
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	x := &exchange{w: w, id: uuid.NewString()}
	// Set directly, not through Header.Set, to keep AWS's spelling on the wire.
	w.Header()[RequestIDHeader] = []string{x.id}
	w.Header().Set(server.RequestIDHeader, x.id)
	ctx := server.WithRequestID(r.Context(), x.id)
	log := h.logger()
	h.Gate.RequestStarted("aws")
	defer func() {
		if p := recover(); p != nil {
			log.Error("request panicked", "request_id", x.id, "operation", x.operation, "panic", p, "stack", string(debug.Stack()))
			x.cause = fmt.Errorf("panic: %v", p)
			if !x.written {
				x.fail(0, &server.APIError{Type: server.TypeInternalServiceError, Message: "An error occurred on the server side."})
			}
		}
		h.Gate.RequestDone("aws", x.operation, x.errType, time.Since(start))
		level := h.Gate.RequestLogLevel()
		attrs := []slog.Attr{
			slog.String("request_id", x.id), slog.String("api", "aws"), slog.String("operation", x.operation),
			slog.Int("status", x.status), slog.Duration("duration", time.Since(start)),
		}
		if x.principal != "" {
			attrs = append(attrs, slog.String("principal", x.principal))
		}
		if x.errType != "" {
			attrs = append(attrs, slog.String("error_type", x.errType))
		}
		if x.cause != nil {
			level = slog.LevelError
			attrs = append(attrs, slog.Any("cause", x.cause))
		}
		log.LogAttrs(ctx, level, "request", attrs...)
	}()
	h.serve(ctx, x, r)
}

func (h *Handler) serve(ctx context.Context, x *exchange, r *http.Request) {
	call := server.Call{Protocol: "aws", SourceAddr: r.RemoteAddr,
		Caller: server.Caller{SourceIP: server.HostOf(r.RemoteAddr), SecureTransport: r.TLS != nil}}
	prefix, ops, actionOf, serviceName := TargetPrefix, operations, server.SecretAction, "Secrets Manager"
	if h.Keys != nil {
		prefix, ops, actionOf, serviceName = KMSTargetPrefix, kmsOperations, server.KeyAction, "KMS"
	}
	if name, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), prefix); ok {
		if _, known := ops[name]; known {
			call.Operation, call.Action = name, actionOf(name)
		}
	}
	// A starting node answers 503 before it authenticates: it may not have
	// the caller's key yet, and SDKs retry a 503 (after Retry-After).
	if e := h.Gate.NotReady(); e != nil {
		x.w.Header().Set("Retry-After", "1")
		x.fail(0, e)
		return
	}
	// refuse answers a request that never reached authorization, and
	// audits it (sampled: see server.RefusalSampler).
	refuse := func(status int, e *server.APIError) {
		_ = h.Gate.Refused(ctx, call, e)
		x.fail(status, e)
	}
	// A source whose requests keep failing to authenticate is refused
	// before its body is read.
	if err := h.Gate.Throttle(ctx, call); err != nil {
		x.failWith(err)
		return
	}
	if r.URL.Path != "/" {
		refuse(http.StatusNotFound, apiError(TypeUnknownOperation, "Nothing is served at %s: AWS JSON requests are POST /.", truncate(r.URL.Path)))
		return
	}
	if r.Method != http.MethodPost {
		x.w.Header().Set("Allow", http.MethodPost)
		refuse(http.StatusMethodNotAllowed, apiError(TypeUnknownOperation, "Method %s is not allowed: AWS JSON requests are POST /.", truncate(r.Method)))
		return
	}
	body, err := h.readBody(x.w, r)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			refuse(0, apiError(TypeRequestTooLarge, "The request body exceeds %d bytes.", tooLarge.Limit))
			return
		}
		refuse(0, apiError(TypeSerialization, "The request body could not be read."))
		return
	}

	if h.Auth == nil {
		x.cause = errors.New("awsjson: Handler has no Authenticator")
		refuse(0, &server.APIError{Type: server.TypeInternalServiceError, Message: "An error occurred on the server side."})
		return
	}
	principal, err := h.Auth.Authenticate(ctx, r, body)
	if err != nil {
		_ = h.Gate.Refused(ctx, call, err)
		x.failWith(err)
		return
	}
	x.principal = principal
	call.Caller.Principal = principal
	ctx = context.WithValue(ctx, principalKey{}, principal)
	ctx = server.WithPrincipal(ctx, principal)

	target := r.Header.Get("X-Amz-Target")
	name, ok := strings.CutPrefix(target, prefix)
	op, known := ops[name]
	if !ok || !known {
		if target == "" {
			refuse(0, apiError(TypeUnknownOperation, "The X-Amz-Target header is missing; it names the operation, as in secretsmanager.GetSecretValue."))
		} else {
			refuse(0, apiError(TypeUnknownOperation, "%s is not a %s operation.", truncate(target), serviceName))
		}
		return
	}
	x.operation = name
	if e := checkContentType(r.Header.Get("Content-Type")); e != nil {
		refuse(0, e)
		return
	}
	in := op.newInput()
	if err := decodeRequest(body, in); err != nil {
		refuse(0, apiError(TypeSerialization, "%s", err.Error()))
		return
	}
	call.Request = in
	// A raw caller must send the ClientRequestToken the SDKs fill in; the
	// Service refuses its absence where AWS does, after the model's
	// constraints and before the secret is looked up.
	ctx = server.WithClientTokenRequired(ctx)
	consistency, cerr := server.ParseConsistency(r.Header.Get(server.ConsistencyHeader), r.Header.Get(server.MinIndexHeader))
	if cerr != nil {
		refuse(0, cerr)
		return
	}
	ctx = server.WithConsistency(ctx, consistency)

	ctx, audit, err := h.Gate.Begin(ctx, call)
	if err != nil {
		x.failWith(err)
		return
	}
	// The audit record is written before the response: if it cannot be,
	// the caller gets an error and the value never leaves the node. A
	// panic is recorded too, then recovered by ServeHTTP.
	out, err := audit.Serve(func() (proto.Message, error) { return op.invoke(ctx, h, in) })
	if idx := server.AnsweredIndex(ctx); idx > 0 {
		x.w.Header().Set(server.IndexHeader, strconv.FormatUint(idx, 10))
	}
	if err != nil {
		x.failWith(err)
		return
	}
	x.write(http.StatusOK, encodeResponse(make([]byte, 0, 512), out))
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	limit := h.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	if r.ContentLength > limit {
		return nil, &http.MaxBytesError{Limit: limit}
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
}

// checkContentType accepts the awsJson media types and a missing header.
func checkContentType(ct string) *server.APIError {
	if ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err == nil && (mt == "application/x-amz-json-1.1" || mt == "application/x-amz-json-1.0") {
		return nil
	}
	return apiError(TypeSerialization, "Content-Type must be %s, not %q.", ContentType, truncate(ct))
}

func apiError(typ, format string, args ...any) *server.APIError {
	return &server.APIError{Type: typ, Message: fmt.Sprintf(format, args...)}
}

// truncate bounds caller-supplied text echoed in messages and logs.
func truncate(s string) string {
	const limit = 128
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}

// failWith renders whatever a layer below returned as the APIError the
// caller should see; the cause of an internal failure is only logged.
func (x *exchange) failWith(err error) {
	ae := server.AsAPIError(err)
	if ae.Type == server.TypeInternalServiceError {
		if cause := errors.Unwrap(ae); cause != nil {
			x.cause = cause
		} else {
			x.cause = err
		}
	}
	x.fail(0, ae)
}

// fail writes an AWS JSON error; status 0 means the type's usual status.
func (x *exchange) fail(status int, e *server.APIError) {
	if status == 0 {
		status = awserr.JSONStatus(e.Type)
	}
	x.errType = e.Type
	x.w.Header()[ErrorTypeHeader] = []string{e.Type}
	b := make([]byte, 0, 64+len(e.Type)+len(e.Message))
	b = append(b, `{"__type":`...)
	b = appendString(b, e.Type)
	b = append(b, ',')
	b = appendString(b, awserr.MessageMember(e.Type))
	b = append(b, ':')
	b = appendString(b, e.Message)
	b = append(b, '}')
	x.write(status, b)
}

func (x *exchange) write(status int, body []byte) {
	hdr := x.w.Header()
	hdr.Set("Content-Type", ContentType)
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	x.w.WriteHeader(status)
	_, _ = x.w.Write(body)
	x.status = status
	x.written = true
}

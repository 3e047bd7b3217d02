package server

import (
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
)

// EdgeMetrics is what the edge reports to the node's metrics (metrics.Metrics
// implements it). Every label it passes comes from a closed set — an
// operation the API serves, an AWS error type — never from what a caller
// sent.
type EdgeMetrics interface {
	RequestStarted(api string)
	RequestDone(api, operation, code string, d time.Duration)
	AuthFailure(reason string)
	AuthzDenial()
	AuditWriteFailure()
}

// CodeOK is the code label of a request answered without an error.
const CodeOK = "OK"

// RequestStarted reports a request in flight on api ("grpc" or "aws").
func (g *Gate) RequestStarted(api string) {
	if g != nil && g.Metrics != nil {
		g.Metrics.RequestStarted(api)
	}
}

// RequestDone reports a finished request: errType is the AWS error type
// it was answered with, "" (CodeOK) when it succeeded; operation "" is
// reported as "unknown".
func (g *Gate) RequestDone(api, operation, errType string, d time.Duration) {
	if g == nil || g.Metrics == nil {
		return
	}
	if errType == "" {
		errType = CodeOK
	}
	if operation == "" {
		operation = "unknown"
	}
	g.Metrics.RequestDone(api, operation, errType, d)
}

// errType is err's AWS error type, or "" for nil.
func errType(err error) string {
	if err == nil {
		return ""
	}
	return AsAPIError(err).Type
}

func (g *Gate) authFailure(err error) {
	if g.Metrics != nil {
		g.Metrics.AuthFailure(AsAPIError(err).Type)
	}
}

func (g *Gate) authzDenial() {
	if g.Metrics != nil {
		g.Metrics.AuthzDenial()
	}
}

func (g *Gate) auditWriteFailure() {
	if g.Metrics != nil {
		g.Metrics.AuditWriteFailure()
	}
}

// methodName is the method part of a gRPC full method name: the operation
// label (gRPC calls only registered methods' interceptors, so the set is
// closed).
func methodName(fullMethod string) string {
	if i := strings.LastIndexByte(fullMethod, '/'); i >= 0 {
		return fullMethod[i+1:]
	}
	return fullMethod
}

// RequestLog samples the one-line-per-request log: a request it admits is
// logged at Info, the others at Debug (so `log_level: debug` shows every
// request). A request answered InternalServiceError is logged at Error
// whatever it says.
type RequestLog struct {
	every uint64
	n     atomic.Uint64
}

// NewRequestLog logs one request in every at Info; 0 none (request logs
// off, the default of a node), 1 every one.
func NewRequestLog(every int) *RequestLog {
	return &RequestLog{every: uint64(max(every, 0))}
}

// requestLogLevel is the level of the next request's line: Info without a
// Gate or a RequestLog (protocol tests), else as RequestLog samples.
func (g *Gate) requestLogLevel() slog.Level {
	if g == nil || g.RequestLog == nil {
		return slog.LevelInfo
	}
	r := g.RequestLog
	if r.every == 0 || r.n.Add(1)%r.every != 0 {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// RequestLogLevel is requestLogLevel for the AWS handler.
func (g *Gate) RequestLogLevel() slog.Level { return g.requestLogLevel() }

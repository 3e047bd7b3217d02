package testkit

import "sync"

// RecordingAuditor keeps every audit record written to it, for tests that
// check what the edge Gate audits. R is server.AuditRecord: the type
// parameter keeps this package free of server, so that server's own tests
// can import it too. Every write succeeds and the log is always healthy.
type RecordingAuditor[R any] struct {
	mu      sync.Mutex
	records []R
}

// Write keeps r.
func (a *RecordingAuditor[R]) Write(r R) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.records = append(a.records, r)
	return nil
}

// HashValue stands in for the log's keyed hash.
func (a *RecordingAuditor[R]) HashValue(string) string { return "hmac" }

// Healthy is always nil.
func (a *RecordingAuditor[R]) Healthy() error { return nil }

// Records returns a copy of the records written so far.
func (a *RecordingAuditor[R]) Records() []R {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]R(nil), a.records...)
}

package node

import (
	"fmt"
	"sync"
	"time"

	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/audit"
)

// auditPurpose names the keyring-derived key that HMACs audit parameters.
const auditPurpose = "audit-params"

// auditSink adapts an audit.Log to server.Auditor. The log is opened on
// first use, because its HMAC key is derived from the keyring, which a
// node has only once the region's first leader made it. Until then, and
// whenever the log cannot be opened, Write fails, so requests fail rather
// than go unaudited.
type auditSink struct {
	cfg audit.Config // Key unset: derived on open
	key func() ([]byte, error)
	// observe, when set, is told of every record written (metrics).
	observe auditObserved

	mu  sync.Mutex
	log *audit.Log
}

var _ server.Auditor = (*auditSink)(nil)

func (a *auditSink) open() (*audit.Log, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.log != nil {
		return a.log, nil
	}
	key, err := a.key()
	if err != nil {
		return nil, fmt.Errorf("audit key: %w", err)
	}
	cfg := a.cfg
	cfg.Key = key
	l, err := audit.Open(cfg)
	clear(key)
	if err != nil {
		return nil, err
	}
	a.log = l
	return l, nil
}

// Write appends r; an error means it is not in the log.
func (a *auditSink) Write(r server.AuditRecord) error {
	l, err := a.open()
	if err != nil {
		return fmt.Errorf("open audit log %s: %w", a.cfg.Path, err)
	}
	start := time.Now()
	if err := l.Write(audit.Record(r)); err != nil {
		return err
	}
	if a.observe != nil {
		a.observe.AuditWritten(time.Since(start))
	}
	return nil
}

// HashValue is the log's keyed hash of v. Without a log there is no key;
// the placeholder is never written, because Write fails too.
func (a *auditSink) HashValue(v string) string {
	h, err := a.Hash(v)
	if err != nil {
		return "unavailable"
	}
	return h
}

// Hash is the log's keyed hash of v, for AdminService.AuditHash; it fails
// while the log cannot be opened (before the keyring exists).
func (a *auditSink) Hash(v string) (string, error) {
	l, err := a.open()
	if err != nil {
		return "", fmt.Errorf("open audit log %s: %w", a.cfg.Path, err)
	}
	return l.HashValue(v), nil
}

// Healthy is nil when the log is open and its last write succeeded; the
// Gate refuses requests before they act otherwise.
func (a *auditSink) Healthy() error {
	l, err := a.open()
	if err != nil {
		return fmt.Errorf("open audit log %s: %w", a.cfg.Path, err)
	}
	return l.Healthy()
}

func (a *auditSink) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.log == nil {
		return nil
	}
	err := a.log.Close()
	a.log = nil
	return err
}

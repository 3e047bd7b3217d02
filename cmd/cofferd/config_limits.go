package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/cofferhq/coffer/node"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/audit"
	"github.com/cofferhq/coffer/storage"
)

// AuditConfig is where this node writes its audit log (one JSON line per
// request, hash-chained; see `coffer audit verify`), and how much of it
// stays on disk.
type AuditConfig struct {
	// Path is the active log file; default data_dir/audit.log.
	Path string `yaml:"path"`
	// MaxBytes rotates the file at this size; 0 means the audit package's
	// default (64 MiB).
	MaxBytes int64 `yaml:"max_bytes"`
	// NoSync skips the fsync before a request is answered (faster; a crash
	// can then lose records of answered requests).
	NoSync bool `yaml:"no_sync"`
	// MaxFiles and MaxAge are the retention limits of rotated files
	// (0: none). Only files marked shipped (FILE.shipped, `coffer audit
	// ack FILE`) are deleted, unless DeleteUnshipped.
	MaxFiles        int64         `yaml:"max_files"`
	MaxAge          time.Duration `yaml:"max_age"`
	DeleteUnshipped bool          `yaml:"delete_unshipped"`
	// MinFreeBytes is the free space the audit log's volume keeps back:
	// below it the log refuses records, so every request fails closed,
	// with a clear error, before the disk is full. 0: 64 MiB; -1: no check.
	MinFreeBytes int64 `yaml:"min_free_bytes"`
	// SampleInterval is how often refused requests (failed authentication,
	// throttled, denied) are summarized: each kind is recorded in full once
	// per interval and counted otherwise. A negative one (-1s) records
	// every refusal in full.
	SampleInterval time.Duration `yaml:"sample_interval"`
}

// StorageConfig bounds the state a region keeps.
type StorageConfig struct {
	// MinFreeBytes is the free space the data volume keeps back: below it
	// writes are refused before they are proposed, on this node and, while
	// it is below, by the region's leader. 0: 1 GiB, or a tenth of a
	// volume smaller than 10 GiB; -1: no check.
	MinFreeBytes int64 `yaml:"min_free_bytes"`
	// MaxVersionsPerSecret is the versions-per-secret quota (AWS's is 100):
	// a write that would keep more, when no unlabeled version older than 24
	// hours can go, is refused with LimitExceededException.
	MaxVersionsPerSecret int `yaml:"max_versions_per_secret"`
}

// LimitsConfig bounds what callers can make a node do (node.Limits, which
// says what each does). connections_per_source and auth_failures_per_second
// take -1 for no bound.
type LimitsConfig struct {
	ConnectionsPerSource     int           `yaml:"connections_per_source"`
	GRPCMaxConcurrentStreams uint32        `yaml:"grpc_max_concurrent_streams"`
	GRPCMaxRecvBytes         int           `yaml:"grpc_max_recv_bytes"`
	GRPCKeepaliveMinTime     time.Duration `yaml:"grpc_keepalive_min_time"`
	GRPCMaxConnectionIdle    time.Duration `yaml:"grpc_max_connection_idle"`
	HTTPReadTimeout          time.Duration `yaml:"http_read_timeout"`
	HTTPWriteTimeout         time.Duration `yaml:"http_write_timeout"`
	HTTPIdleTimeout          time.Duration `yaml:"http_idle_timeout"`
	HTTPMaxHeaderBytes       int           `yaml:"http_max_header_bytes"`
	AuthFailuresPerSecond    float64       `yaml:"auth_failures_per_second"`
	AuthFailureBurst         int           `yaml:"auth_failure_burst"`
	SnapshotTimeout          time.Duration `yaml:"snapshot_timeout"`
	// MaxReadWait bounds every wait of a read for the region's log (its
	// read point, x-coffer-min-index), whatever the caller's deadline.
	MaxReadWait time.Duration `yaml:"max_read_wait"`
}

func defaultAuditConfig() AuditConfig {
	return AuditConfig{MaxFiles: 16, SampleInterval: server.DefaultRefusalSampleInterval}
}

func defaultStorageConfig() StorageConfig {
	return StorageConfig{MaxVersionsPerSecret: storage.MaxVersions}
}

func defaultLimitsConfig() LimitsConfig {
	d := node.DefaultLimits()
	return LimitsConfig{
		ConnectionsPerSource: d.ConnectionsPerSource, GRPCMaxConcurrentStreams: d.MaxConcurrentStreams,
		GRPCMaxRecvBytes: d.MaxRecvMsgBytes, GRPCKeepaliveMinTime: d.KeepaliveMinTime, GRPCMaxConnectionIdle: d.MaxConnectionIdle,
		HTTPReadTimeout: d.HTTPReadTimeout, HTTPWriteTimeout: d.HTTPWriteTimeout, HTTPIdleTimeout: d.HTTPIdleTimeout,
		HTTPMaxHeaderBytes: d.HTTPMaxHeaderBytes, AuthFailuresPerSecond: d.AuthFailuresPerSecond, AuthFailureBurst: d.AuthFailureBurst,
		SnapshotTimeout: d.SnapshotTimeout, MaxReadWait: server.DefaultMaxReadWait,
	}
}

// validateLimits reports every problem with the audit, storage and limits
// sections.
func (c Config) validateLimits() []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	a := c.Audit
	if a.MaxBytes < 0 || a.MaxFiles < 0 || a.MaxAge < 0 {
		add("audit.max_bytes, max_files and max_age must not be negative")
	}
	if q := c.Storage.MaxVersionsPerSecret; q < storage.MinVersionsQuota || q > storage.MaxVersions {
		add("storage.max_versions_per_secret %d must be between %d and %d", q, storage.MinVersionsQuota, storage.MaxVersions)
	}
	l := c.Limits
	if l.GRPCMaxConcurrentStreams == 0 || l.GRPCMaxRecvBytes <= 0 || l.HTTPMaxHeaderBytes <= 0 || l.AuthFailureBurst <= 0 {
		add("limits.grpc_max_concurrent_streams, grpc_max_recv_bytes, http_max_header_bytes and auth_failure_burst must be positive")
	}
	for name, d := range map[string]time.Duration{
		"grpc_keepalive_min_time": l.GRPCKeepaliveMinTime, "grpc_max_connection_idle": l.GRPCMaxConnectionIdle,
		"http_read_timeout": l.HTTPReadTimeout, "http_write_timeout": l.HTTPWriteTimeout, "http_idle_timeout": l.HTTPIdleTimeout,
		"snapshot_timeout": l.SnapshotTimeout, "max_read_wait": l.MaxReadWait,
	} {
		if d <= 0 {
			add("limits.%s must be positive", name)
		}
	}
	if l.ConnectionsPerSource == 0 {
		errs = append(errs, errors.New("limits.connections_per_source must be positive, or -1 for no bound"))
	}
	return errs
}

// auditRetention is the audit log's retention.
func (c Config) auditRetention() audit.Retention {
	return audit.Retention{MaxFiles: int(c.Audit.MaxFiles), MaxAge: c.Audit.MaxAge, DeleteUnshipped: c.Audit.DeleteUnshipped}
}

// nodeLimits are the node's limits.
func (c Config) nodeLimits() node.Limits {
	l := c.Limits
	return node.Limits{
		ConnectionsPerSource: l.ConnectionsPerSource, MaxConcurrentStreams: l.GRPCMaxConcurrentStreams,
		MaxRecvMsgBytes: l.GRPCMaxRecvBytes, KeepaliveMinTime: l.GRPCKeepaliveMinTime, MaxConnectionIdle: l.GRPCMaxConnectionIdle,
		HTTPReadTimeout: l.HTTPReadTimeout, HTTPWriteTimeout: l.HTTPWriteTimeout, HTTPIdleTimeout: l.HTTPIdleTimeout,
		HTTPMaxHeaderBytes: l.HTTPMaxHeaderBytes, AuthFailuresPerSecond: l.AuthFailuresPerSecond, AuthFailureBurst: l.AuthFailureBurst,
		SnapshotTimeout: l.SnapshotTimeout,
	}
}

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/cofferhq/coffer/health"
	"github.com/cofferhq/coffer/metrics"
	"github.com/cofferhq/coffer/node"
)

// sealedOps serves, while a node is sealed, what its metrics listener will
// serve once it runs: /metrics (coffer_sealed 1 and the unseal progress,
// with the Go runtime's and the process's collectors) and the health
// endpoints — /livez passes (the process is alive; restarting it would
// only seal it again), /readyz fails its "unsealed" check and
// /v1/sys/health answers 503 with "sealed": true, as Vault's does. It
// stops before node.Start, which takes the address over.
type sealedOps struct {
	srv *http.Server
	lis net.Listener
}

// startSealedOps starts the listener on opts.MetricsAddr (nothing when it
// is off). state is read at every scrape.
func startSealedOps(opts node.Options, state func() metrics.SealState, log *slog.Logger) (*sealedOps, error) {
	if opts.MetricsAddr == "" {
		return &sealedOps{}, nil
	}
	if err := node.CheckListener("metrics", opts.MetricsAddr, opts.MetricsTLS != nil, opts.InsecurePlaintext); err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", opts.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("sealed: listen on %s: %w", opts.MetricsAddr, err)
	}
	m := metrics.New()
	m.Registry().MustRegister(metrics.NewSealCollector(state))
	hs := &health.Server{
		Checks: []health.Check{{Name: "unsealed", Run: func() string {
			if state().Sealed {
				return "the node is sealed"
			}
			return ""
		}}},
		Status: func() health.Status {
			return health.Status{Role: health.Unavailable, Region: opts.Service.Region, NodeID: opts.Raft.NodeID}
		},
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	mux.Handle(health.LivezPath, hs)
	mux.Handle(health.ReadyzPath, hs)
	mux.Handle(health.SysHealthPath, hs)
	o := &sealedOps{lis: lis, srv: &http.Server{Handler: mux, TLSConfig: opts.MetricsTLS, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10}}
	go func() {
		var err error
		if opts.MetricsTLS != nil {
			err = o.srv.ServeTLS(lis, "", "")
		} else {
			err = o.srv.Serve(lis)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("sealed: metrics server stopped", "err", err)
		}
	}()
	return o, nil
}

// stop closes the listener and every connection at once, so the node can
// bind the address; a scrape in flight is cut, the next one reaches the
// node.
func (o *sealedOps) stop() {
	if o.srv != nil {
		_ = o.srv.Close()
		_ = o.lis.Close() // closed already, unless Serve had not started yet
	}
}

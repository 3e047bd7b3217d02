package region

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	replicationv1 "github.com/cofferhq/coffer/proto/coffer/replication/v1"
)

// SetAWSHandler sets the handler that answers AWS API requests paired
// regions forward here (the node's AWS endpoint). Until it is set, a
// forwarded request is refused as Unavailable.
func (m *Manager) SetAWSHandler(h http.Handler) {
	m.mu.Lock()
	m.aws = h
	m.mu.Unlock()
}

// Paired reports whether this region is paired with region.
func (m *Manager) Paired(region string) bool {
	_, err := m.peer(region)
	return err == nil
}

// ForwardAWS sends r (whose body is body) to the paired region dest over
// the region link and writes dest's answer to w.
func (m *Manager) ForwardAWS(ctx context.Context, dest string, w http.ResponseWriter, r *http.Request, body []byte) error {
	req := &replicationv1.ForwardAWSRequest{
		SourceRegion: m.cfg.Region, DestinationRegion: dest, Method: r.Method, RequestUri: r.URL.RequestURI(),
		Host: r.Host, Body: body, RemoteAddr: r.RemoteAddr, SecureTransport: r.TLS != nil,
	}
	for name, values := range r.Header {
		req.Headers = append(req.Headers, &replicationv1.HTTPHeader{Name: name, Values: values})
	}
	var resp *replicationv1.ForwardAWSResponse
	err := m.call(ctx, dest, func(ctx context.Context, cc *grpc.ClientConn) error {
		var err error
		resp, err = replicationv1.NewRegionReplicationServiceClient(cc).ForwardAWS(ctx, req)
		return err
	})
	if err != nil {
		return err
	}
	for _, h := range resp.GetHeaders() {
		w.Header()[h.GetName()] = h.GetValues()
	}
	w.WriteHeader(int(resp.GetStatus()))
	_, _ = w.Write(resp.GetBody())
	return nil
}

// ForwardAWS answers a request a paired region forwarded: the caller's
// certificate must come from the CA of the region the request names as
// its source, and the request must be for this region.
func (r *receiver) ForwardAWS(ctx context.Context, req *replicationv1.ForwardAWSRequest) (*replicationv1.ForwardAWSResponse, error) {
	if err := r.verifySource(ctx, req.GetSourceRegion()); err != nil {
		return nil, err
	}
	if req.GetDestinationRegion() != r.m.cfg.Region {
		return nil, status.Errorf(codes.InvalidArgument, "request for region %s forwarded to %s", req.GetDestinationRegion(), r.m.cfg.Region)
	}
	r.m.mu.Lock()
	h := r.m.aws
	r.m.mu.Unlock()
	if h == nil {
		return nil, status.Error(codes.Unavailable, "this node does not serve the AWS API")
	}
	hr, err := http.NewRequestWithContext(ctx, req.GetMethod(), req.GetRequestUri(), io.NopCloser(bytes.NewReader(req.GetBody())))
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "forwarded request: %v", err)
	}
	hr.RequestURI = req.GetRequestUri()
	hr.Host = req.GetHost()
	hr.RemoteAddr = req.GetRemoteAddr()
	hr.ContentLength = int64(len(req.GetBody()))
	for _, hd := range req.GetHeaders() {
		hr.Header[hd.GetName()] = hd.GetValues()
	}
	if req.GetSecureTransport() {
		hr.TLS = &tls.ConnectionState{}
	}
	rec := &recorder{header: http.Header{}}
	h.ServeHTTP(rec, hr)
	out := &replicationv1.ForwardAWSResponse{Status: int32(rec.status), Body: rec.body.Bytes()}
	if out.Status == 0 {
		out.Status = http.StatusOK
	}
	for name, values := range rec.header {
		out.Headers = append(out.Headers, &replicationv1.HTTPHeader{Name: name, Values: values})
	}
	r.m.touch(req.GetSourceRegion())
	return out, nil
}

// recorder is the http.ResponseWriter a forwarded request is answered into.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(b)
}

// call runs fn on a connection to dest, trying its known addresses (the
// pairing record's and the WAN pool's), the last one that worked first.
func (m *Manager) call(ctx context.Context, dest string, fn func(context.Context, *grpc.ClientConn) error) error {
	p, err := m.peer(dest)
	if err != nil {
		return err
	}
	addrs := p.GetAddresses()
	for _, v := range m.Regions() {
		if v.Region == dest {
			addrs = append(addrs, v.Addrs...)
		}
	}
	pool := caPool(p.GetCaPem())
	if pool == nil {
		return fmt.Errorf("region %s: pairing record holds no CA certificate", dest)
	}
	var lastErr error
	for _, addr := range m.ordered(dest, addrs) {
		cc, err := m.conn(dest, addr, pool)
		if err != nil {
			lastErr = err
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, shipTimeout)
		err = fn(sctx, cc)
		cancel()
		if err == nil {
			m.mu.Lock()
			m.conns[dest+"|last"] = cc
			m.mu.Unlock()
			return nil
		}
		lastErr = fmt.Errorf("%s: %w", addr, err)
	}
	if lastErr == nil {
		lastErr = fmt.Errorf("region %s: no address known", dest)
	}
	return lastErr
}

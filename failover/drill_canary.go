package failover

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"google.golang.org/grpc/status"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (d *drill) canaryValue(name, version string) string {
	return "coffer drill canary " + name + " " + version
}

// createCanaries creates the canaries in the primary, replicated to the
// secondary, and waits for their replicas.
func (d *drill) createCanaries(ctx context.Context) error {
	p, s := d.cfg.Primary, d.cfg.Secondary
	for _, name := range d.names {
		tok := newToken()
		v := d.canaryValue(name, tok)
		_, err := retry(ctx, func(ctx context.Context) (*cofferv1.CreateSecretResponse, error) {
			return p.secrets().CreateSecret(ctx, &cofferv1.CreateSecretRequest{
				Name: name, SecretString: &v, ClientRequestToken: tok, Description: "coffer drill canary; deleted when the drill ends",
				AddReplicaRegions: []*cofferv1.ReplicaRegion{{Region: s.Name}},
			})
		})
		if err != nil {
			return fmt.Errorf("create canary %s in %s: %w", name, p.Name, err)
		}
		d.mu.Lock()
		d.tries++
		d.mu.Unlock()
		d.ack(write{canary: name, version: tok, region: p.Name, at: time.Now()})
	}
	d.step("created %d canaries in %s, replicated to %s", len(d.names), p.Name, s.Name)
	for _, name := range d.names {
		w := d.lastWrite(name)
		if err := d.waitRead(ctx, s, w, p.Name); err != nil {
			return err
		}
	}
	d.step("every canary replica is readable in %s", s.Name)
	return nil
}

func (d *drill) ack(w write) {
	d.mu.Lock()
	d.writes = append(d.writes, w)
	d.last[w.canary] = w
	d.mu.Unlock()
}

func (d *drill) lastWrite(name string) write {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last[name]
}

// waitRead waits until reg serves w's version of its canary with the
// right value and primary region.
func (d *drill) waitRead(ctx context.Context, reg Region, w write, primary string) error {
	wctx, cancel := context.WithTimeout(ctx, d.cfg.ConvergeTimeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(wctx, 5*time.Second)
		got, err := reg.secrets().GetSecretValue(cctx, &cofferv1.GetSecretValueRequest{SecretId: w.canary, VersionId: w.version})
		var desc *cofferv1.DescribeSecretResponse
		if err == nil {
			desc, err = reg.secrets().DescribeSecret(cctx, &cofferv1.DescribeSecretRequest{SecretId: w.canary})
		}
		ccancel()
		switch {
		case err != nil:
			last = err
		case got.GetSecretString() != d.canaryValue(w.canary, w.version):
			return fmt.Errorf("canary %s version %s in %s has another value than written", w.canary, w.version, reg.Name)
		case desc.GetPrimaryRegion() != primary:
			last = fmt.Errorf("its primary region is %s, not yet %s", desc.GetPrimaryRegion(), primary)
		default:
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("canary %s version %s not readable in %s with primary %s within %s: %v", w.canary, w.version, reg.Name, primary, d.cfg.ConvergeTimeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startWriter runs the canary writer: round robin over the canaries, one
// write at a time, each canary written about once a second (so a drill of
// a minute stays far below the versions quota). A write goes to the
// region that took the last one; refused there, it is tried in the other
// region at once, with the same token, so the first region to take writes
// after a cut is found as soon as it does.
func (d *drill) startWriter() {
	d.stop, d.stopped = make(chan struct{}), make(chan struct{})
	interval := max(time.Second/time.Duration(len(d.names)), 20*time.Millisecond)
	go func() {
		defer close(d.stopped)
		regions := []Region{d.cfg.Primary, d.cfg.Secondary}
		pref := 0
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-d.stop:
				return
			case <-tick.C:
			}
			name := d.names[i%len(d.names)]
			tok := newToken()
			v := d.canaryValue(name, tok)
			// A write refused by both regions is retried (same token) every
			// 20 ms rather than at the next tick, so RTO is measured to
			// that resolution, not the write interval's.
			for done := false; !done; {
				done = d.writeOnce(regions, &pref, name, tok, v)
				if !done {
					select {
					case <-d.stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			}
		}
	}()
}

// writeOnce tries one canary write in the preferred region, then the
// other; it reports whether one acknowledged it.
func (d *drill) writeOnce(regions []Region, pref *int, name, tok, v string) bool {
	for k := range 2 {
		reg := regions[(*pref+k)%2]
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := reg.secrets().PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: name, SecretString: &v, ClientRequestToken: tok})
		cancel()
		d.mu.Lock()
		d.tries++
		if err != nil {
			d.errs[reg.Name+": "+errType(err)]++
		}
		d.mu.Unlock()
		if err == nil {
			d.ack(write{canary: name, version: tok, region: reg.Name, at: time.Now()})
			*pref = (*pref + k) % 2
			return true
		}
	}
	return false
}

func (d *drill) stopWriter() {
	if d.stop != nil {
		close(d.stop)
		<-d.stopped
		d.stop = nil
	}
}

// errType is the AWS error type of a refusal, or its gRPC code.
func errType(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return "transport"
	}
	for _, det := range st.Details() {
		if t := reasonOf(det); t != "" {
			return t
		}
	}
	return st.Code().String()
}

// waitWrite waits for a canary write acknowledged by region after since.
func (d *drill) waitWrite(ctx context.Context, region string, since time.Time) (time.Duration, error) {
	wctx, cancel := context.WithTimeout(ctx, d.cfg.ConvergeTimeout)
	defer cancel()
	for {
		d.mu.Lock()
		for _, w := range d.writes {
			if w.region == region && w.at.After(since) {
				d.mu.Unlock()
				return w.at.Sub(since), nil
			}
		}
		d.mu.Unlock()
		select {
		case <-wctx.Done():
			return 0, fmt.Errorf("no canary write succeeded in %s within %s", region, d.cfg.ConvergeTimeout)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// versions lists every version id of a canary in reg, with its labels.
func versions(ctx context.Context, reg Region, name string) (map[string][]string, error) {
	out := map[string][]string{}
	token := ""
	for {
		resp, err := retry(ctx, func(ctx context.Context) (*cofferv1.ListSecretVersionIdsResponse, error) {
			return reg.secrets().ListSecretVersionIds(ctx, &cofferv1.ListSecretVersionIdsRequest{SecretId: name, IncludeDeprecated: true, NextToken: token})
		})
		if err != nil {
			return nil, err
		}
		for _, v := range resp.GetVersions() {
			out[v.GetVersionId()] = append([]string{}, v.GetVersionStages()...) // non-nil: present
		}
		if token = resp.GetNextToken(); token == "" {
			return out, nil
		}
	}
}

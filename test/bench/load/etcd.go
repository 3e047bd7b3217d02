package load

import (
	"context"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcd drives etcd's KV API: Put(key, value) and Get(key), linearizable by
// default or serializable (a local read) for Stale. Each connection is a
// clientv3.Client with a single endpoint, so the spread over endpoints is
// the same as Coffer's and not left to etcd's balancer.
type etcd struct {
	endpoints []string
	conns     []*clientv3.Client
	clients   []*etcdClient
	layout    connLayout
}

type etcdClient struct {
	kv       *clientv3.Client
	getOpts  []clientv3.OpOption
	endpoint string
}

func openEtcd(cfg Config) (*etcd, error) {
	e := &etcd{endpoints: cfg.Endpoints, layout: layout(len(cfg.Endpoints), cfg.Clients, cfg.ClientsPerConn)}
	var getOpts []clientv3.OpOption
	if cfg.Consistency == Stale {
		getOpts = append(getOpts, clientv3.WithSerializable())
	}
	for _, idx := range e.layout.endpoint {
		ep := cfg.Endpoints[idx]
		cli, err := clientv3.New(clientv3.Config{
			Endpoints: []string{ep},
			// No DialTimeout: the client connects lazily, like grpc.NewClient
			// does for Coffer, and WaitReady covers a cluster still starting.
			Logger: zap.NewNop(),
		})
		if err != nil {
			_ = e.Close()
			return nil, fmt.Errorf("etcd %s: %w", ep, err)
		}
		e.conns = append(e.conns, cli)
		e.clients = append(e.clients, &etcdClient{kv: cli, getOpts: getOpts, endpoint: ep})
	}
	return e, nil
}

func (e *etcd) Client(i int) Client { return e.clients[e.layout.conn[i%len(e.layout.conn)]] }

func (e *etcd) Conns() int { return len(e.conns) }

// Ready asks every endpoint for its status; a member is ready once it
// knows a leader.
func (e *etcd) Ready(ctx context.Context) error {
	var errs []error
	seen := map[string]bool{}
	for _, c := range e.clients {
		if seen[c.endpoint] {
			continue
		}
		seen[c.endpoint] = true
		st, err := c.kv.Status(ctx, c.endpoint)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", c.endpoint, err))
		case st.Leader == 0:
			errs = append(errs, fmt.Errorf("%s: no leader", c.endpoint))
		}
	}
	return errors.Join(errs...)
}

// ErrorType is etcd's error text ("etcdserver: request timed out") when
// the server sent one, else the gRPC code.
func (e *etcd) ErrorType(err error) string {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Error()
	}
	return grpcErrorType(err)
}

func (e *etcd) Close() error {
	var errs []error
	for _, c := range e.conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

func (c *etcdClient) Create(ctx context.Context, key string, value []byte) error {
	_, err := c.kv.Put(ctx, key, string(value))
	return err
}

func (c *etcdClient) Put(ctx context.Context, key string, value []byte) error {
	_, err := c.kv.Put(ctx, key, string(value))
	return err
}

func (c *etcdClient) Get(ctx context.Context, key string) (int, error) {
	resp, err := c.kv.Get(ctx, key, c.getOpts...)
	if err != nil {
		return 0, err
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	return len(resp.Kvs[0].Value), nil
}

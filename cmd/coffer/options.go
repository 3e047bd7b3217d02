package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
)

// Defaults of the global options, in one place.
const (
	defaultEndpoint = "127.0.0.1:7400"
	defaultOutput   = outputTable
	defaultTimeout  = 30 * time.Second
)

// Output formats accepted by -o/--output.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// options are the global settings every command accepts: where the server is,
// how to reach it, and how to print what it says.
type options struct {
	endpoint string
	output   string
	timeout  time.Duration // deadline of each RPC, not of the whole command
	tls      bool
	caFile   string
	// insecure lets credentials go to a non-loopback endpoint in plaintext.
	insecure bool
	// region scopes the signatures; "" learns it from the node.
	region string
	// certFile and keyFile are a TLS client certificate, which a server
	// configured for mTLS maps to a principal.
	certFile string
	keyFile  string

	// Credentials: an access key from COFFER_ACCESS_KEY_ID and
	// COFFER_SECRET_ACCESS_KEY, else from a profile of a credentials file
	// (AWS shared-credentials format, as cofferd writes root-credentials).
	accessKeyID     string
	secretAccessKey string
	// sessionToken accompanies temporary credentials (COFFER_SESSION_TOKEN).
	sessionToken    string
	credentialsFile string
	profile         string

	// consistency and minIndex shape how read commands read; "" and 0 leave
	// it to the server (linearizable, no wait).
	consistency string
	minIndex    uint64
	// readFlagsGiven names the read flags given on the command line (not
	// from the environment), so that commands that do not read can refuse
	// them instead of ignoring them.
	readFlagsGiven []string
}

// optionsFromEnv returns the defaults overridden by the COFFER_* environment
// variables. An empty variable counts as unset.
func optionsFromEnv(lookup func(string) (string, bool)) (options, error) {
	o := options{endpoint: defaultEndpoint, output: defaultOutput, timeout: defaultTimeout}
	get := func(name string) (string, bool) {
		v, ok := lookup(name)
		return v, ok && v != ""
	}
	if v, ok := get("COFFER_ENDPOINT"); ok {
		o.endpoint = v
	}
	if v, ok := get("COFFER_OUTPUT"); ok {
		o.output = v
	}
	if v, ok := get("COFFER_CA_FILE"); ok {
		o.caFile = v
	}
	if v, ok := get("COFFER_TLS"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, &usageError{msg: fmt.Sprintf("COFFER_TLS=%q: want true or false", v)}
		}
		o.tls = b
	}
	if v, ok := get("COFFER_REGION"); ok {
		o.region = v
	}
	if v, ok := get("COFFER_ACCESS_KEY_ID"); ok {
		o.accessKeyID = v
	}
	if v, ok := get("COFFER_SECRET_ACCESS_KEY"); ok {
		o.secretAccessKey = v
	}
	if v, ok := get("COFFER_SESSION_TOKEN"); ok {
		o.sessionToken = v
	}
	if v, ok := get("COFFER_CERT_FILE"); ok {
		o.certFile = v
	}
	if v, ok := get("COFFER_KEY_FILE"); ok {
		o.keyFile = v
	}
	if v, ok := get("COFFER_CREDENTIALS_FILE"); ok {
		o.credentialsFile = v
	}
	if v, ok := get("COFFER_PROFILE"); ok {
		o.profile = v
	}
	if v, ok := get("COFFER_CONSISTENCY"); ok {
		if err := checkConsistency(v); err != nil {
			return o, &usageError{msg: fmt.Sprintf("COFFER_CONSISTENCY=%q: %v", v, err)}
		}
		o.consistency = v
	}
	return o, nil
}

// globalFlagNames are the flags register adds; leaf usage lists them apart.
var globalFlagNames = map[string]bool{
	"endpoint": true, "output": true, "o": true, "timeout": true, "tls": true, "ca-file": true, "insecure": true, "region": true,
	"consistency": true, "min-index": true, "profile": true, "credentials-file": true,
	"cert-file": true, "key-file": true,
}

// globalFlagHelp documents the global flags for "coffer help". It is written
// out rather than generated so that it shows the built-in defaults and the
// environment variables, not whatever this process happens to have set.
const globalFlagHelp = `  --endpoint HOST:PORT  server address (env COFFER_ENDPOINT; default 127.0.0.1:7400)
  -o, --output FORMAT   table or json (env COFFER_OUTPUT; default table)
  --timeout DURATION    deadline of each RPC, such as 5s or 2m (default 30s)
  --tls                 connect with TLS instead of plaintext (env COFFER_TLS)
  --ca-file FILE        PEM CA bundle that verifies the server; implies --tls
                        (env COFFER_CA_FILE; default the system roots)
  --insecure            send credentials in plaintext to an endpoint that is not
                        on loopback (refused otherwise: use --tls)
  --region NAME         region the requests are for and signed for (env
                        COFFER_REGION; default: the one the node names); a node
                        forwards calls for another paired region to it
  --profile NAME        credentials profile (env COFFER_PROFILE; default "default")
  --credentials-file F  credentials file in the AWS shared-credentials format
                        (env COFFER_CREDENTIALS_FILE; default ~/.coffer/credentials);
                        COFFER_ACCESS_KEY_ID and COFFER_SECRET_ACCESS_KEY win over it
                        (with COFFER_SESSION_TOKEN for temporary credentials)
  --cert-file FILE      TLS client certificate (PEM), for a server that maps
                        certificates to principals; implies --tls (env COFFER_CERT_FILE)
  --key-file FILE       its private key (env COFFER_KEY_FILE)
  --consistency MODE    how read commands read: linearizable (the server's
                        default) or stale, from the answering node's own state
                        (env COFFER_CONSISTENCY)
  --min-index N         read commands first wait until the answering node has
                        applied log index N, as printed by --show-index
`

// register adds the global flags to fs, bound to o, so that they are accepted
// at every level of the command line. The current values are the defaults, so
// a flag given after the subcommand overrides one given before it.
func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.endpoint, "endpoint", o.endpoint, "server `HOST:PORT`")
	fs.StringVar(&o.output, "output", o.output, "output `FORMAT`: table or json")
	fs.StringVar(&o.output, "o", o.output, "shorthand for --output")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "deadline of each RPC")
	fs.BoolVar(&o.tls, "tls", o.tls, "connect with TLS")
	fs.StringVar(&o.caFile, "ca-file", o.caFile, "PEM `FILE` of CAs that verify the server")
	fs.BoolVar(&o.insecure, "insecure", o.insecure, "send credentials in plaintext off loopback")
	fs.StringVar(&o.region, "region", o.region, "region `NAME` the requests are signed for")
	fs.StringVar(&o.certFile, "cert-file", o.certFile, "TLS client certificate `FILE`")
	fs.StringVar(&o.keyFile, "key-file", o.keyFile, "TLS client key `FILE`")
	fs.StringVar(&o.profile, "profile", o.profile, "credentials profile `NAME`")
	fs.StringVar(&o.credentialsFile, "credentials-file", o.credentialsFile, "credentials `FILE`")
	fs.Func("consistency", "read `MODE`: linearizable or stale", func(v string) error {
		if err := checkConsistency(v); err != nil {
			return err
		}
		o.consistency = v
		o.readFlagsGiven = append(o.readFlagsGiven, "--consistency")
		return nil
	})
	fs.Func("min-index", "wait until the node has applied log index `N` before reading", func(v string) error {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return errors.New("want a log index, a whole number")
		}
		o.minIndex = n
		o.readFlagsGiven = append(o.readFlagsGiven, "--min-index")
		return nil
	})
}

// checkConsistency accepts the read modes the server understands.
func checkConsistency(mode string) error {
	if mode != consistencyLinearizable && mode != consistencyStale {
		return errors.New("want linearizable or stale")
	}
	return nil
}

// validate reports the first global option that cannot work.
func (o *options) validate() error {
	switch {
	case o.endpoint == "":
		return errors.New("--endpoint must not be empty")
	case o.output != outputTable && o.output != outputJSON:
		return fmt.Errorf("--output %q: want table or json", o.output)
	case o.timeout <= 0:
		return fmt.Errorf("--timeout %v: must be positive", o.timeout)
	case (o.certFile == "") != (o.keyFile == ""):
		return errors.New("--cert-file and --key-file must be given together")
	}
	return nil
}

// secure reports whether the connection uses TLS.
func (o *options) secure() bool { return o.tls || o.caFile != "" || o.certFile != "" }

// dial returns a client connection; it does not connect until the first RPC.
// Every call is signed with the access key (SigV4, server/sigv4/grpcsig), so
// what travels is no reusable secret; still, credentials and the answers go
// to an endpoint off loopback only over TLS, unless --insecure.
func (o *options) dial() (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if o.secure() {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.certFile != "" {
			cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
			if err != nil {
				return nil, fmt.Errorf("--cert-file/--key-file: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		if o.caFile != "" {
			pem, err := os.ReadFile(o.caFile)
			if err != nil {
				return nil, fmt.Errorf("--ca-file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--ca-file %s: no PEM certificates found", o.caFile)
			}
			cfg.RootCAs = pool
		}
		creds = credentials.NewTLS(cfg)
	}
	dialOpts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	id, secret, token, err := o.credentials()
	if err != nil {
		return nil, err
	}
	if id != "" {
		if !o.secure() && !o.insecure && !loopbackEndpoint(o.endpoint) {
			return nil, &usageError{msg: fmt.Sprintf("refusing to send credentials in plaintext to %s, which is not a loopback address: "+
				"connect with TLS (--tls, and --ca-file FILE to verify the server, such as the ca.crt `cofferd ca issue --api` writes), "+
				"or pass --insecure to send them in plaintext anyway", o.endpoint)}
		}
		signer := &grpcsig.Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: token, Region: o.region}
		dialOpts = append(dialOpts, signer.DialOptions()...)
	}
	if o.region != "" {
		// Also named in metadata, so an unsigned call (a client
		// certificate's, an anonymous one) reaches the region too.
		region := o.region
		dialOpts = append(dialOpts, grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, grpcsig.RegionHeader, region), method, req, reply, cc, opts...)
		}))
	}
	conn, err := grpc.NewClient(o.endpoint, dialOpts...)
	if err != nil {
		return nil, &usageError{msg: fmt.Sprintf("--endpoint %q: %v", o.endpoint, err)}
	}
	return conn, nil
}

// loopbackEndpoint reports whether a gRPC target can only reach this
// machine: a loopback IP or localhost (a name is not resolved: what it
// resolves to can change), or a Unix socket.
func loopbackEndpoint(target string) bool {
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return true
	}
	if scheme, rest, ok := strings.Cut(target, "://"); ok && scheme != "" {
		target = strings.TrimPrefix(rest[strings.Index(rest, "/")+1:], "/")
	}
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		host = target
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

package node_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/cofferhq/coffer/node"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/server/sigv4"
	"github.com/cofferhq/coffer/server/sigv4/grpcsig"
)

// A node with no leader (it does not bootstrap, and no one else is there)
// is not ready: both APIs answer ServiceUnavailable, naming why, to a
// client with credentials the region will have — never an authentication
// error.
func TestNotReadyUntilLeader(t *testing.T) {
	opts := clustertestOptions(t)
	opts.Raft.Bootstrap = false
	opts.AWSAddr = "127.0.0.1:0"
	n, err := node.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	creds := &grpcsig.Credentials{AccessKeyID: rootID, SecretAccessKey: rootSecret, Region: "us-east-1"}
	conn := dial(t, n.Addr(), append(creds.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	_, err = cofferv1.NewSecretsManagerServiceClient(conn).ListSecrets(t.Context(), &cofferv1.ListSecretsRequest{})
	if status.Code(err) != codes.Unavailable || server.TypeOf(err) != server.TypeServiceUnavailable || !strings.Contains(err.Error(), "waiting for a leader") {
		t.Fatalf("gRPC before ready: %v; want Unavailable, ServiceUnavailable, waiting for a leader", err)
	}

	body := []byte(`{}`)
	req, _ := http.NewRequest(http.MethodPost, "http://"+n.AWSAddr()+"/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "secretsmanager.ListSecrets")
	if err := sigv4.Sign(req, body, sigv4.Credentials{AccessKeyID: rootID, SecretAccessKey: rootSecret}, "us-east-1", "secretsmanager", time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || resp.Header.Get("X-Amzn-Errortype") != "ServiceUnavailable" ||
		!strings.Contains(b.String(), `"__type":"ServiceUnavailable"`) {
		t.Fatalf("AWS before ready: %d %v %s; want 503 ServiceUnavailable with Retry-After: 1", resp.StatusCode, resp.Header, b.String())
	}
	select {
	case <-n.Ready():
		t.Fatal("a node without a leader says it is ready")
	default:
	}
}

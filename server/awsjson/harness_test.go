package awsjson

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/cofferhq/coffer/server"
	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/storage/kms"
	"github.com/cofferhq/coffer/test/testkit"
)

// newService returns a ready Service over a fresh store.
func newService(tb testing.TB) *server.Service {
	tb.Helper()
	store, err := storage.Open(filepath.Join(tb.TempDir(), "state.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = store.Close() })
	root := make([]byte, 32)
	if _, err := rand.Read(root); err != nil {
		tb.Fatal(err)
	}
	cfg := server.DefaultConfig()
	cfg.AccountID = "123456789012"
	locked, err := kms.NewLockedKey(root, kms.LockBestEffort)
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := server.New(cfg, &testkit.DirectReplicator{Store: store}, store, locked, discardLogger())
	if err != nil {
		tb.Fatal(err)
	}
	if err := svc.EnsureKeyring(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return svc
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// allowAll authenticates every request as one principal.
type allowAll struct{}

func (allowAll) Authenticate(context.Context, *http.Request, []byte) (string, error) {
	return "test-principal", nil
}

// startHandler serves h on loopback HTTP.
func startHandler(tb testing.TB, h http.Handler) *httptest.Server {
	tb.Helper()
	ts := httptest.NewServer(h)
	tb.Cleanup(ts.Close)
	return ts
}

// startAWS serves a real service through the handler and returns an AWS SDK
// client pointed at it.
func startAWS(tb testing.TB) (*secretsmanager.Client, *httptest.Server) {
	tb.Helper()
	ts := startHandler(tb, &Handler{Service: newService(tb), Auth: allowAll{}, Logger: discardLogger()})
	return sdkClient(ts.URL), ts
}

func sdkClient(url string) *secretsmanager.Client {
	return secretsmanager.New(secretsmanager.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		BaseEndpoint: aws.String(url),
		Retryer:      aws.NopRetryer{},
	})
}

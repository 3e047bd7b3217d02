package compat

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/cofferhq/coffer/storage"
	"github.com/cofferhq/coffer/test/testkit"
	"github.com/cofferhq/coffer/test/wait"
)

// startDevRegions runs `cofferd dev --regions names` and returns the AWS
// endpoint of the first region's node: the one endpoint every client of
// the test uses, whatever its region.
func startDevRegions(t *testing.T, names string) *server {
	t.Helper()
	dir := t.TempDir()
	// dev --regions puts region k on the gRPC port + 100*k, its AWS API
	// on + 5: the first region's AWS endpoint is the gRPC port + 5.
	host, port := devRegionsBase(t, strings.Count(names, ",")+1)
	s := &server{endpoint: "http://" + net.JoinHostPort(host, strconv.Itoa(port+5)), grpcAddr: net.JoinHostPort(host, strconv.Itoa(port)),
		dataDir: filepath.Join(dir, "data"), logFile: filepath.Join(dir, "cofferd.log")}
	logf, err := os.Create(s.logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cofferdBin, "dev", "--regions", names, "--grpc-addr", s.grpcAddr, "--aws-addr", net.JoinHostPort(host, "0"),
		"--data-dir", s.dataDir, "--account-id", account)
	cmd.Env = append(os.Environ(), "COFFER_ROOT_ACCESS_KEY_ID="+accessKeyID, "COFFER_ROOT_SECRET_ACCESS_KEY="+secretAccessKey)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(s.logFile)
			t.Logf("cofferd log:\n%s", tail(b, 60))
		}
	})
	// Ready once the banner is out: it follows the pairing of every two
	// regions. (Polling with signed calls before then would fail to
	// authenticate and get loopback throttled, pairing included.)
	wait.True(t, 120*time.Second, "cofferd dev --regions to pair its regions", func() bool {
		select {
		case <-exited:
			b, _ := os.ReadFile(s.logFile)
			t.Fatalf("cofferd exited:\n%s", tail(b, 40))
		default:
		}
		b, _ := os.ReadFile(s.logFile)
		return strings.Contains(string(b), "Coffer dev: ")
	})
	return s
}

// devRegionsBase picks a gRPC port for dev --regions such that the ports
// every region's node takes (base + 100*k + 0…5) are free now.
func devRegionsBase(t *testing.T, regions int) (string, int) {
	t.Helper()
	for range 50 {
		host, portStr, _ := net.SplitHostPort(testkit.FreeAddr(t))
		port, _ := strconv.Atoi(portStr)
		if port+100*regions+10 > 65535 {
			continue
		}
		free := true
		for k := 0; k < regions && free; k++ {
			for off := 0; off <= 5 && free; off++ {
				l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port+100*k+off)))
				if err != nil {
					free = false
					break
				}
				l.Close()
			}
		}
		if free {
			return host, port
		}
	}
	t.Fatal("no free port layout for dev --regions")
	return "", 0
}

// regionClient is an SDK client for region on s's one endpoint, as a
// multi-region program against LocalStack or moto builds it.
func (s *server) regionClient(region string) *secretsmanager.Client {
	return secretsmanager.New(secretsmanager.Options{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider(accessKeyID, secretAccessKey, ""),
		BaseEndpoint: aws.String(s.endpoint),
		Retryer:      aws.NopRetryer{},
		HTTPClient:   &http.Client{Timeout: 30 * time.Second},
	})
}

// TestOneEndpointForEveryRegion is issue 18 §1: against `cofferd dev
// --regions us-east-1,us-west-2,us-east-2`, one client per region, all on
// the first node's endpoint, run a multi-region program — create in
// us-east-1 with a replica in us-west-2, read the replica through the
// us-west-2 client, promote it — and the aws CLIs read through the same
// endpoint with --region.
func TestOneEndpointForEveryRegion(t *testing.T) {
	s := startDevRegions(t, "us-east-1,us-west-2,us-east-2")
	ctx := context.Background()
	east, west, east2 := s.regionClient("us-east-1"), s.regionClient("us-west-2"), s.regionClient("us-east-2")
	for _, c := range []*secretsmanager.Client{east, west, east2} {
		wait.True(t, 90*time.Second, "every region to answer on the one endpoint", func() bool {
			_, err := c.ListSecrets(ctx, &secretsmanager.ListSecretsInput{})
			return err == nil
		})
	}

	created, err := east.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("multi/db"), SecretString: aws.String("v1"),
		AddReplicaRegions: []types.ReplicaRegionType{{Region: aws.String("us-west-2")}}})
	if err != nil {
		t.Fatalf("CreateSecret in us-east-1 with a us-west-2 replica: %v", err)
	}
	if len(created.ReplicationStatus) != 1 || aws.ToString(created.ReplicationStatus[0].Region) != "us-west-2" {
		t.Fatalf("ReplicationStatus %+v", created.ReplicationStatus)
	}
	var replica *secretsmanager.GetSecretValueOutput
	wait.True(t, 60*time.Second, "the replica to be readable through the us-west-2 client", func() bool {
		replica, err = west.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("multi/db")})
		return err == nil
	})
	if aws.ToString(replica.SecretString) != "v1" || aws.ToString(replica.ARN) != storage.WithRegion(aws.ToString(created.ARN), "us-west-2") {
		t.Fatalf("replica read: %q %s", aws.ToString(replica.SecretString), aws.ToString(replica.ARN))
	}
	d, err := west.DescribeSecret(ctx, &secretsmanager.DescribeSecretInput{SecretId: aws.String("multi/db")})
	if err != nil || aws.ToString(d.PrimaryRegion) != "us-east-1" {
		t.Fatalf("replica's DescribeSecret: %+v %v", d, err)
	}
	// The replica is read-only in us-west-2 until promoted there.
	if _, err := west.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("multi/db"), SecretString: aws.String("w")}); err == nil {
		t.Fatal("a write to the replica succeeded before promotion")
	}
	if _, err := west.StopReplicationToReplica(ctx, &secretsmanager.StopReplicationToReplicaInput{SecretId: aws.String("multi/db")}); err != nil {
		t.Fatalf("StopReplicationToReplica through the us-west-2 client: %v", err)
	}
	if _, err := west.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("multi/db"), SecretString: aws.String("v2-west")}); err != nil {
		t.Fatalf("write to the promoted secret in us-west-2: %v", err)
	}
	if got, err := west.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("multi/db")}); err != nil || aws.ToString(got.SecretString) != "v2-west" {
		t.Fatalf("promoted secret: %+v %v", got, err)
	}
	// us-east-2 has no copy: its own answer, through the same endpoint.
	_, err = east2.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String("multi/db")})
	if code, _ := sdkErrorCode(err); code != "ResourceNotFoundException" {
		t.Fatalf("us-east-2 read: %v, want ResourceNotFoundException", err)
	}
	// A region this deployment does not serve is refused as before.
	_, err = s.regionClient("eu-west-1").ListSecrets(ctx, &secretsmanager.ListSecretsInput{})
	if code, _ := sdkErrorCode(err); code != "InvalidSignatureException" {
		t.Fatalf("unpaired region: %v, want InvalidSignatureException", err)
	}

	for _, c := range awsCLIs(t) {
		got := c.ok(t, s, "get-secret-value", "--secret-id", "multi/db", "--region", "us-west-2")
		if str(got, "SecretString") != "v2-west" {
			t.Fatalf("%s get-secret-value --region us-west-2: %v", c.name, got)
		}
		c.fails(t, s, "ResourceNotFoundException", "describe-secret", "--secret-id", "multi/db", "--region", "us-east-2")
	}
}

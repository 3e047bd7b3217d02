package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/rotation/rotators"
	"github.com/cofferhq/coffer/server/rotation/rotators/dbtest"
	"github.com/cofferhq/coffer/test/testkit/clustertest"
	"github.com/cofferhq/coffer/test/wait"
)

// dbCreds is the part of an RDS secret a client logs in with.
type dbCreds struct {
	version            string
	Username, Password string
}

func readDBCreds(ctx context.Context, c cofferv1.SecretsManagerServiceClient, id, versionID, stage string) (dbCreds, error) {
	out, err := c.GetSecretValue(ctx, &cofferv1.GetSecretValueRequest{SecretId: id, VersionId: versionID, VersionStage: stage})
	if err != nil {
		return dbCreds{}, err
	}
	var cr dbCreds
	if err := json.Unmarshal([]byte(out.GetSecretString()), &cr); err != nil {
		return dbCreds{}, err
	}
	cr.version = out.GetVersionId()
	return cr, nil
}

// TestBuiltinRotatorThroughEngine rotates a PostgreSQL user with the
// built-in alternating-users rotator the way an operator does: RotateSecret
// with coffer:rotator/postgresql-multi-user on a 3-node region, the leader's
// engine running the steps, 20 times in a row. A client on a follower keeps reading
// AWSCURRENT and logging in throughout; no login fails, each rotation
// alternates the user, and the previous user works until the next one.
func TestBuiltinRotatorThroughEngine(t *testing.T) {
	const rotations = 20
	db := dbtest.StartPostgres(t)
	pw0 := "initial" + strings.ReplaceAll(uuid.NewString(), "-", "")
	db.Exec(t, "CREATE ROLE app WITH LOGIN PASSWORD '"+pw0+"'",
		"CREATE TABLE widgets (id int)", "INSERT INTO widgets VALUES (1), (2), (3)", "GRANT SELECT ON widgets TO app")
	c := rotationCluster(t)
	leader := c.Leader()
	follower := c.Others(leader)[0]
	ctx := context.Background()
	call := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, clustertest.RPCTimeout) }

	cctx, cancel := call()
	master, err := c.Client(follower).CreateSecret(cctx, &cofferv1.CreateSecretRequest{Name: "db/master",
		SecretString: new(db.SecretJSON(db.AdminUser, db.AdminPassword, nil))})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel = call()
	app, err := c.Client(follower).CreateSecret(cctx, &cofferv1.CreateSecretRequest{Name: "db/app",
		SecretString: new(db.SecretJSON("app", pw0, map[string]any{"masterarn": master.GetArn()}))})
	cancel()
	if err != nil {
		t.Fatal(err)
	}

	var logins, failures atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			cctx, cancel := call()
			cr, err := readDBCreds(cctx, c.Client(follower), app.GetArn(), "", "AWSCURRENT")
			cancel()
			if err == nil {
				var n int64
				if n, err = db.QueryInt(ctx, cr.Username, cr.Password, "SELECT count(*) FROM widgets"); err == nil && n != 3 {
					err = fmt.Errorf("read %d rows, want 3", n)
				}
				if err != nil {
					err = fmt.Errorf("version %s user %s: %w", cr.version, cr.Username, err)
				}
			}
			if err != nil {
				failures.Add(1)
				firstFailure.CompareAndSwap(nil, err.Error())
				continue
			}
			logins.Add(1)
		}
	})
	defer func() { close(stop); wg.Wait() }()

	prev := dbCreds{version: app.GetVersionId(), Username: "app", Password: pw0}
	var took []time.Duration
	for i := range rotations {
		start := time.Now()
		cctx, cancel := call()
		req := &cofferv1.RotateSecretRequest{SecretId: "db/app", ClientRequestToken: uuid.NewString()}
		if i == 0 {
			req.RotationLambdaArn = rotators.PostgreSQLMultiUser
			req.RotationRules = &cofferv1.RotationRules{AutomaticallyAfterDays: new(int64(30))}
		}
		rot, err := c.Client(follower).RotateSecret(cctx, req)
		cancel()
		if err != nil {
			t.Fatalf("rotation %d: %v", i+1, err)
		}
		wait.Until(t, clustertest.ConvergeTimeout, func() error {
			d := describeSecret(t, c, "db/app")
			if st := d.GetRotationStatus(); st != nil {
				return fmt.Errorf("rotation %d in progress: %v", i+1, st)
			}
			if got := rotationStages(d)[rot.GetVersionId()]; !slices.Equal(got, []string{"AWSCURRENT"}) {
				return fmt.Errorf("rotation %d: new version has %v", i+1, got)
			}
			return nil
		})
		took = append(took, time.Since(start))
		d := describeSecret(t, c, "db/app")
		if got := rotationStages(d); len(got) != 2 || !slices.Equal(got[prev.version], []string{"AWSPREVIOUS"}) {
			t.Fatalf("after rotation %d: stages %v, want %s AWSPREVIOUS and %s AWSCURRENT", i+1, got, prev.version, rot.GetVersionId())
		}
		cctx, cancel = call()
		cur, err := readDBCreds(cctx, c.Client(leader), "db/app", rot.GetVersionId(), "AWSCURRENT")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if wantUser := map[bool]string{true: "app", false: "app_clone"}[i%2 == 1]; cur.Username != wantUser {
			t.Fatalf("after rotation %d AWSCURRENT names %s, want %s", i+1, cur.Username, wantUser)
		}
		// Alternating users: AWSPREVIOUS still logs in until the next rotation.
		if err := db.Login(ctx, prev.Username, prev.Password); err != nil {
			t.Fatalf("after rotation %d the previous user %s cannot log in: %v", i+1, prev.Username, err)
		}
		seen := logins.Load()
		wait.Until(t, clustertest.ConvergeTimeout, func() error {
			if logins.Load() > seen || failures.Load() > 0 {
				return nil
			}
			return fmt.Errorf("no client login since rotation %d", i+1)
		})
		prev = cur
	}
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d client logins failed; first: %v", n, n+logins.Load(), firstFailure.Load())
	}
	var sum time.Duration
	for _, d := range took {
		sum += d
	}
	t.Logf("%d rotations through the engine (RotateSecret → AWSCURRENT moved): mean %v, max %v; %d client logins on a follower, 0 failed",
		rotations, (sum / rotations).Round(time.Millisecond), slices.Max(took).Round(time.Millisecond), logins.Load())
}

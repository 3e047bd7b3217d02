package rotators_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/rotation"
	"github.com/cofferhq/coffer/server/rotation/rotators"
	"github.com/cofferhq/coffer/server/rotation/rotators/dbtest"
	"github.com/cofferhq/coffer/test/wait"
)

// engine is one database product with what the tests need to set it up.
type engine struct {
	name          string
	start         func(testing.TB) *dbtest.Server
	single, multi string
	// setup creates the login user "app" with password and a table it may
	// read; readQuery counts that table's rows.
	setup     func(t *testing.T, db *dbtest.Server, password string)
	readQuery string
}

var engines = []engine{
	{
		name: "postgresql", start: dbtest.StartPostgres,
		single: rotators.PostgreSQLSingleUser, multi: rotators.PostgreSQLMultiUser,
		setup: func(t *testing.T, db *dbtest.Server, password string) {
			db.Exec(t, "CREATE ROLE app WITH LOGIN PASSWORD '"+password+"'",
				"CREATE TABLE widgets (id int)", "INSERT INTO widgets VALUES (1), (2), (3)",
				"GRANT SELECT ON widgets TO app")
		},
		readQuery: "SELECT count(*) FROM widgets",
	},
	{
		name: "mariadb", start: dbtest.StartMariaDB,
		single: rotators.MySQLSingleUser, multi: rotators.MySQLMultiUser,
		setup: func(t *testing.T, db *dbtest.Server, password string) {
			db.Exec(t, "CREATE USER 'app'@'%' IDENTIFIED BY '"+password+"'",
				"CREATE DATABASE appdb", "CREATE TABLE appdb.widgets (id int)",
				"INSERT INTO appdb.widgets VALUES (1), (2), (3)",
				"GRANT SELECT ON appdb.* TO 'app'@'%'")
		},
		readQuery: "SELECT COUNT(*) FROM appdb.widgets",
	},
}

// initialPassword is the password the tests give "app" before any
// rotation; the test passwords need no quoting.
func initialPassword() string { return "initial" + strings.ReplaceAll(uuid.NewString(), "-", "") }

func wantReads(t *testing.T, db *dbtest.Server, e engine, user, password string) {
	t.Helper()
	n, err := db.QueryInt(context.Background(), user, password, e.readQuery)
	if err != nil || n != 3 {
		t.Fatalf("%s reads the table: %d rows, %v; want 3 rows", user, n, err)
	}
}

// TestSingleUser rotates "app" twice with the single-user strategy: each
// time the old password stops working, the new one works and keeps the
// user's grants, and the labels end as AWS leaves them. Every step is then
// run again, which must change nothing.
func TestSingleUser(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			db := e.start(t)
			svc := startCoffer(t)
			pw0 := initialPassword()
			e.setup(t, db, pw0)
			arn, v1 := createSecret(t, svc, "db/"+e.name+"/single", db.SecretJSON("app", pw0, map[string]any{"dbInstanceIdentifier": "keep-me"}))
			fn := rotators.Builtin(svc)[e.single]

			v2 := rotate(t, fn, arn)
			cur := mustCreds(t, svc, arn, "AWSCURRENT")
			if cur.VersionID != v2 || cur.Username != "app" || cur.Password == pw0 || len(cur.Password) != 32 {
				t.Fatalf("AWSCURRENT after rotation = version %s user %s (password %d chars), want version %s user app with a new 32-character password",
					cur.VersionID, cur.Username, len(cur.Password), v2)
			}
			if strings.ContainsAny(cur.Password, rotators.ExcludeCharacters) {
				t.Fatal("the generated password contains an excluded character")
			}
			wantLabels(t, svc, arn, v2, v1)
			wantLoginRefused(t, db, "app", pw0)
			wantReads(t, db, e, "app", cur.Password)
			raw, err := svc.GetSecretValue(context.Background(), &cofferv1.GetSecretValueRequest{SecretId: arn})
			if err != nil || !strings.Contains(raw.GetSecretString(), `"dbInstanceIdentifier":"keep-me"`) {
				t.Fatalf("fields the rotator does not know must survive: %v", err)
			}

			// The finished rotation's steps again: all no-ops.
			for _, step := range rotation.Steps {
				if err := fn.Invoke(context.Background(), rotation.Event{Step: step, SecretID: arn, ClientRequestToken: v2}); err != nil {
					t.Fatalf("%s again after finishing: %v", step, err)
				}
			}
			wantLabels(t, svc, arn, v2, v1)
			wantLogin(t, db, "app", cur.Password)

			// A second rotation with every step run twice, as a retrying
			// engine might.
			v3 := uuid.NewString()
			var pending string
			for _, step := range rotation.Steps {
				for range 2 {
					if err := fn.Invoke(context.Background(), rotation.Event{Step: step, SecretID: arn, ClientRequestToken: v3}); err != nil {
						t.Fatalf("%s: %v", step, err)
					}
					if step == rotation.StepCreateSecret {
						p, err := readCreds(context.Background(), svc, arn, v3, "AWSPENDING")
						if err != nil {
							t.Fatal(err)
						}
						if pending != "" && p.Password != pending {
							t.Fatal("createSecret run twice replaced the pending password")
						}
						pending = p.Password
					}
				}
			}
			cur3 := mustCreds(t, svc, arn, "AWSCURRENT")
			if cur3.VersionID != v3 || cur3.Password != pending {
				t.Fatalf("AWSCURRENT = %s, want %s with the pending password", cur3.VersionID, v3)
			}
			wantLabels(t, svc, arn, v3, v2)
			wantLoginRefused(t, db, "app", cur.Password)
			wantReads(t, db, e, "app", cur3.Password)

			// Someone stores a wrong AWSCURRENT by hand: the rotation logs
			// in with AWSPREVIOUS, which still matches the database.
			bogus := db.SecretJSON("app", initialPassword(), nil)
			v4, err := svc.PutSecretValue(context.Background(), &cofferv1.PutSecretValueRequest{
				SecretId: arn, ClientRequestToken: uuid.NewString(), SecretString: &bogus})
			if err != nil {
				t.Fatal(err)
			}
			v5 := rotate(t, fn, arn)
			cur5 := mustCreds(t, svc, arn, "AWSCURRENT")
			wantLabels(t, svc, arn, v5, v4.GetVersionId())
			wantLoginRefused(t, db, "app", cur3.Password)
			wantReads(t, db, e, "app", cur5.Password)
		})
	}
}

// TestAlternatingUsers rotates with the alternating-users strategy: the
// first rotation creates app_clone with app's rights, then the rotations
// alternate, and the previous user keeps working until the rotation after.
func TestAlternatingUsers(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			db := e.start(t)
			svc := startCoffer(t)
			pw0 := initialPassword()
			e.setup(t, db, pw0)
			masterARN, _ := createSecret(t, svc, "db/"+e.name+"/master", db.SecretJSON(db.AdminUser, db.AdminPassword, nil))
			arn, v1 := createSecret(t, svc, "db/"+e.name+"/multi", db.SecretJSON("app", pw0, map[string]any{"masterarn": masterARN}))
			fn := rotators.Builtin(svc)[e.multi]

			v2 := rotate(t, fn, arn)
			c2 := mustCreds(t, svc, arn, "AWSCURRENT")
			if c2.VersionID != v2 || c2.Username != "app_clone" || c2.MasterARN != masterARN {
				t.Fatalf("AWSCURRENT after the first rotation = version %s user %s masterarn %q, want %s app_clone %q",
					c2.VersionID, c2.Username, c2.MasterARN, v2, masterARN)
			}
			wantLabels(t, svc, arn, v2, v1)
			wantReads(t, db, e, "app_clone", c2.Password)
			wantReads(t, db, e, "app", pw0) // the previous user is untouched

			v3 := rotate(t, fn, arn)
			c3 := mustCreds(t, svc, arn, "AWSCURRENT")
			if c3.VersionID != v3 || c3.Username != "app" || c3.Password == pw0 {
				t.Fatalf("AWSCURRENT after the second rotation = version %s user %s, want %s app with a new password", c3.VersionID, c3.Username, v3)
			}
			wantLabels(t, svc, arn, v3, v2)
			wantReads(t, db, e, "app", c3.Password)
			wantLoginRefused(t, db, "app", pw0)
			wantReads(t, db, e, "app_clone", c2.Password) // AWSPREVIOUS still works

			// The third rotation, each step twice: back to app_clone, whose
			// old password now fails while app keeps working.
			v4 := uuid.NewString()
			for _, step := range rotation.Steps {
				for range 2 {
					if err := fn.Invoke(context.Background(), rotation.Event{Step: step, SecretID: arn, ClientRequestToken: v4}); err != nil {
						t.Fatalf("%s: %v", step, err)
					}
				}
			}
			c4 := mustCreds(t, svc, arn, "AWSCURRENT")
			if c4.VersionID != v4 || c4.Username != "app_clone" {
				t.Fatalf("AWSCURRENT after the third rotation = version %s user %s, want %s app_clone", c4.VersionID, c4.Username, v4)
			}
			wantLabels(t, svc, arn, v4, v3)
			wantReads(t, db, e, "app_clone", c4.Password)
			wantLoginRefused(t, db, "app_clone", c2.Password)
			wantReads(t, db, e, "app", c3.Password)
		})
	}
}

// TestFailuresNeverShowPasswords breaks a rotation in the ways a real one
// breaks (the database no longer takes any known password; the pending
// password was never set; the API refuses the pending version) and checks
// each error's kind and that its text holds no password.
func TestFailuresNeverShowPasswords(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			db := e.start(t)
			svc := startCoffer(t)
			pw0 := initialPassword()
			e.setup(t, db, pw0)
			arn, v1 := createSecret(t, svc, "db/"+e.name+"/broken", db.SecretJSON("app", pw0, nil))
			fn := rotators.Builtin(svc)[e.single]
			ctx := context.Background()
			token := uuid.NewString()
			step := func(s rotation.Step) error {
				return fn.Invoke(ctx, rotation.Event{Step: s, SecretID: arn, ClientRequestToken: token})
			}
			if err := step(rotation.StepCreateSecret); err != nil {
				t.Fatal(err)
			}
			pending, err := readCreds(ctx, svc, arn, token, "AWSPENDING")
			if err != nil {
				t.Fatal(err)
			}

			// The pending password was never set on the database.
			err = step(rotation.StepTestSecret)
			if !errors.Is(err, rotators.ErrLogin) {
				t.Fatalf("testSecret before setSecret: err = %v, want ErrLogin", err)
			}
			wantNoPassword(t, err.Error(), pending.Password, pw0)
			t.Logf("testSecret before setSecret: %v", err)

			// Someone changed the password behind Coffer's back.
			rogue := initialPassword()
			if e.name == "postgresql" {
				db.Exec(t, "ALTER ROLE app PASSWORD '"+rogue+"'")
			} else {
				db.Exec(t, "SET PASSWORD FOR 'app'@'%' = PASSWORD('"+rogue+"')")
			}
			err = step(rotation.StepSetSecret)
			if !errors.Is(err, rotators.ErrLogin) {
				t.Fatalf("setSecret with no working password: err = %v, want ErrLogin", err)
			}
			wantNoPassword(t, err.Error(), pending.Password, pw0, rogue)
			t.Logf("setSecret with no working password: %v", err)
			if got := labels(t, svc, arn); len(got) != 1 || len(got[v1]) != 1 || got[v1][0] != "AWSCURRENT" {
				t.Fatalf("labels after a failed setSecret = %v, want AWSCURRENT untouched on %s", got, v1)
			}

			// An API that quotes the value back in its error.
			leaky := &leakyAPI{SecretsAPI: svc}
			lfn := rotators.Builtin(leaky)[e.single]
			err = lfn.Invoke(ctx, rotation.Event{Step: rotation.StepCreateSecret, SecretID: arn, ClientRequestToken: uuid.NewString()})
			if err == nil || leaky.stored == "" {
				t.Fatalf("createSecret through a failing PutSecretValue: err = %v", err)
			}
			wantNoPassword(t, err.Error(), leaky.stored, pw0)
			if !strings.Contains(err.Error(), `"password":"[REDACTED]"`) {
				t.Fatalf("the scrubbed error should still show where the password was: %s", err)
			}

			// Alternating users with a master secret for another server:
			// refused before the master's password goes anywhere.
			masterARN, _ := createSecret(t, svc, "db/"+e.name+"/master",
				db.SecretJSON(db.AdminUser, db.AdminPassword, map[string]any{"port": 1}))
			multiARN, _ := createSecret(t, svc, "db/"+e.name+"/multi", db.SecretJSON("app", rogue, map[string]any{"masterarn": masterARN}))
			mfn := rotators.Builtin(svc)[e.multi]
			mtoken := uuid.NewString()
			mstep := func(s rotation.Step) error {
				return mfn.Invoke(ctx, rotation.Event{Step: s, SecretID: multiARN, ClientRequestToken: mtoken})
			}
			if err := mstep(rotation.StepCreateSecret); err != nil {
				t.Fatal(err)
			}
			mpending, err := readCreds(ctx, svc, multiARN, mtoken, "AWSPENDING")
			if err != nil {
				t.Fatal(err)
			}
			err = mstep(rotation.StepSetSecret)
			if !errors.Is(err, rotators.ErrMismatch) {
				t.Fatalf("setSecret with a master secret for another server: err = %v, want ErrMismatch", err)
			}
			wantNoPassword(t, err.Error(), db.AdminPassword, rogue, mpending.Password)

			// The right server but a wrong master password.
			wrong := db.SecretJSON(db.AdminUser, initialPassword(), nil)
			if _, err := svc.PutSecretValue(ctx, &cofferv1.PutSecretValueRequest{SecretId: masterARN,
				ClientRequestToken: uuid.NewString(), SecretString: &wrong}); err != nil {
				t.Fatal(err)
			}
			err = mstep(rotation.StepSetSecret)
			if !errors.Is(err, rotators.ErrLogin) {
				t.Fatalf("setSecret with a wrong master password: err = %v, want ErrLogin", err)
			}
			wantNoPassword(t, err.Error(), db.AdminPassword, rogue, mpending.Password, mustCreds(t, svc, masterARN, "AWSCURRENT").Password)
			t.Logf("setSecret with a wrong master password: %v", err)
		})
	}
}

// leakyAPI fails PutSecretValue with an error that quotes the value, as a
// careless implementation might.
type leakyAPI struct {
	rotation.SecretsAPI
	stored string
}

func (l *leakyAPI) PutSecretValue(_ context.Context, req *cofferv1.PutSecretValueRequest) (*cofferv1.PutSecretValueResponse, error) {
	var c creds
	_ = json.Unmarshal([]byte(req.GetSecretString()), &c)
	l.stored = c.Password
	return nil, fmt.Errorf("cannot store %s", req.GetSecretString())
}

// TestAlternatingUsersClientsNeverFail is the strategy's promise: clients
// that keep reading AWSCURRENT and logging in to PostgreSQL never fail a
// login while 20 rotations run back to back.
func TestAlternatingUsersClientsNeverFail(t *testing.T) {
	const rotations = 20
	const clients = 2
	db := dbtest.StartPostgres(t)
	svc := startCoffer(t)
	e := engines[0]
	pw0 := initialPassword()
	e.setup(t, db, pw0)
	masterARN, _ := createSecret(t, svc, "db/master", db.SecretJSON(db.AdminUser, db.AdminPassword, nil))
	arn, _ := createSecret(t, svc, "db/app", db.SecretJSON("app", pw0, map[string]any{"masterarn": masterARN}))
	fn := rotators.Builtin(svc)[rotators.PostgreSQLMultiUser]

	var logins, failures atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := readCreds(ctx, svc, arn, "", "AWSCURRENT")
				if err == nil {
					var n int64
					n, err = db.QueryInt(ctx, c.Username, c.Password, e.readQuery)
					if err == nil && n != 3 {
						err = fmt.Errorf("read %d rows, want 3", n)
					}
					if err != nil {
						err = fmt.Errorf("version %s user %s: %w", c.VersionID, c.Username, err)
					}
				}
				if err != nil {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				logins.Add(1)
			}
		}()
	}

	begin := time.Now()
	var rotating time.Duration
	for i := range rotations {
		start := time.Now()
		rotate(t, fn, arn)
		rotating += time.Since(start)
		// Make sure clients log in with every version, not only between
		// the first and last rotation: wait until one more login lands.
		seen := logins.Load()
		wait.True(t, time.Minute, fmt.Sprintf("a client login after rotation %d", i+1), func() bool {
			return logins.Load() > seen || failures.Load() > 0
		})
	}
	close(stop)
	wg.Wait()
	total := time.Since(begin)
	cur := mustCreds(t, svc, arn, "AWSCURRENT")
	if cur.Username != "app" { // 20 is even: back to the original user
		t.Fatalf("after %d rotations AWSCURRENT names %s, want app", rotations, cur.Username)
	}
	t.Logf("%d rotations in %v (%v per rotation on average), %d client logins by %d clients, %d failed",
		rotations, total.Round(time.Millisecond), (rotating / rotations).Round(time.Millisecond), logins.Load(), clients, failures.Load())
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d client logins failed; first: %v", n, n+logins.Load(), firstFailure.Load())
	}
}

// TestRotateSecretRunsBuiltin rotates through RotateSecret, so the steps
// run in the engine: it names the AWSPENDING version before createSecret
// runs, without a value, which createSecret must fill rather than trip on.
func TestRotateSecretRunsBuiltin(t *testing.T) {
	for _, e := range engines {
		for _, multi := range []bool{false, true} {
			fnName := map[bool]string{false: e.single, true: e.multi}[multi]
			t.Run(strings.TrimPrefix(fnName, "coffer:rotator/"), func(t *testing.T) {
				db := e.start(t)
				svc := startCoffer(t)
				pw0 := initialPassword()
				e.setup(t, db, pw0)
				extra := map[string]any{}
				if multi {
					masterARN, _ := createSecret(t, svc, "db/master", db.SecretJSON(db.AdminUser, db.AdminPassword, nil))
					extra["masterarn"] = masterARN
				}
				arn, v1 := createSecret(t, svc, "db/app", db.SecretJSON("app", pw0, extra))
				ctx := context.Background()
				prev := v1
				for i := range 2 {
					req := &cofferv1.RotateSecretRequest{SecretId: arn, ClientRequestToken: uuid.NewString()}
					if i == 0 {
						req.RotationLambdaArn = fnName
						days := int64(30)
						req.RotationRules = &cofferv1.RotationRules{AutomaticallyAfterDays: &days}
					}
					rot, err := svc.RotateSecret(ctx, req)
					if err != nil {
						t.Fatal(err)
					}
					var last *cofferv1.DescribeSecretResponse
					wait.True(t, time.Minute, "the engine to finish the rotation", func() bool {
						last, err = svc.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: arn})
						return err == nil && last.GetRotationStatus() == nil &&
							slices.Contains(last.GetVersionIdsToStages()[rot.GetVersionId()].GetStages(), "AWSCURRENT")
					})
					wantLabels(t, svc, arn, rot.GetVersionId(), prev)
					cur := mustCreds(t, svc, arn, "AWSCURRENT")
					wantUser := "app"
					if multi && i == 0 {
						wantUser = "app_clone"
					}
					if cur.Username != wantUser {
						t.Fatalf("after rotation %d AWSCURRENT names %s, want %s", i+1, cur.Username, wantUser)
					}
					wantReads(t, db, e, cur.Username, cur.Password)
					prev = rot.GetVersionId()
				}
				if !multi {
					wantLoginRefused(t, db, "app", pw0)
				}

				// RotateImmediately=false runs testSecret alone, on a copy of
				// AWSCURRENT: it must pass and change nothing.
				before := mustCreds(t, svc, arn, "AWSCURRENT")
				rot, err := svc.RotateSecret(ctx, &cofferv1.RotateSecretRequest{SecretId: arn,
					ClientRequestToken: uuid.NewString(), RotateImmediately: new(false)})
				if err != nil {
					t.Fatal(err)
				}
				wait.True(t, time.Minute, "the engine to run testSecret", func() bool {
					d, err := svc.DescribeSecret(ctx, &cofferv1.DescribeSecretRequest{SecretId: arn})
					return err == nil && d.GetRotationStatus() == nil
				})
				if after := mustCreds(t, svc, arn, "AWSCURRENT"); after != before {
					t.Fatalf("RotateImmediately=false (version %s) changed AWSCURRENT from %s to %s", rot.GetVersionId(), before.VersionID, after.VersionID)
				}
				wantReads(t, db, e, before.Username, before.Password)
			})
		}
	}
}

// TestAlternatingUsersRefuseForeignUsers is the confused deputy the
// alternating strategy must not be: the secret's author chooses the user
// names and the masterarn, and the rotator works with the master's
// credentials. An author who made an account named after the master user
// plus _clone, or who knows a user whose _clone is more privileged, must
// not get the master to set that other user's password. Once the _clone
// is what the rotator itself would have made, the rotation goes ahead.
func TestAlternatingUsersRefuseForeignUsers(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			db := e.start(t)
			svc := startCoffer(t)
			e.setup(t, db, initialPassword())
			masterARN, _ := createSecret(t, svc, "db/"+e.name+"/master", db.SecretJSON(db.AdminUser, db.AdminPassword, nil))
			fn := rotators.Builtin(svc)[e.multi]
			ctx := context.Background()
			login := func(user, password string) {
				if e.name == "postgresql" {
					db.Exec(t, "CREATE ROLE "+user+" WITH LOGIN PASSWORD '"+password+"'")
				} else {
					db.Exec(t, "CREATE USER '"+user+"'@'%' IDENTIFIED BY '"+password+"'")
				}
			}
			// setSecret runs createSecret and setSecret for a new secret
			// naming user and password, and returns the pending password
			// and setSecret's error.
			n := 0
			setSecret := func(user, password string) (string, error) {
				t.Helper()
				n++
				arn, _ := createSecret(t, svc, fmt.Sprintf("db/%s/author-%d", e.name, n), db.SecretJSON(user, password, map[string]any{"masterarn": masterARN}))
				token := uuid.NewString()
				if err := fn.Invoke(ctx, rotation.Event{Step: rotation.StepCreateSecret, SecretID: arn, ClientRequestToken: token}); err != nil {
					t.Fatal(err)
				}
				pending, err := readCreds(ctx, svc, arn, token, "AWSPENDING")
				if err != nil {
					t.Fatal(err)
				}
				return pending.Password, fn.Invoke(ctx, rotation.Event{Step: rotation.StepSetSecret, SecretID: arn, ClientRequestToken: token})
			}
			wantRefused := func(what string, err error, passwords ...string) {
				t.Helper()
				if !errors.Is(err, rotators.ErrNotClone) {
					t.Fatalf("%s: setSecret err = %v, want ErrNotClone", what, err)
				}
				wantNoPassword(t, err.Error(), append(passwords, db.AdminPassword)...)
				t.Logf("%s: %v", what, err)
			}

			// The master user's name with _clone: the "alternate" would be
			// the master user itself.
			attacker := initialPassword()
			login(db.AdminUser+"_clone", attacker)
			pending, err := setSecret(db.AdminUser+"_clone", attacker)
			wantRefused("a secret for "+db.AdminUser+"_clone", err, attacker, pending)
			wantLogin(t, db, db.AdminUser, db.AdminPassword)
			wantLoginRefused(t, db, db.AdminUser, pending)

			// A user the author knows, whose _clone exists and is more
			// privileged.
			opsPW, clonePW := initialPassword(), initialPassword()
			login("ops", opsPW)
			login("ops_clone", clonePW)
			var steps []struct{ what, sql string }
			if e.name == "postgresql" {
				db.Exec(t, "ALTER ROLE ops_clone SUPERUSER")
				steps = []struct{ what, sql string }{
					{"a superuser ops_clone that is no member of ops", "GRANT ops TO ops_clone"},
					{"a superuser ops_clone that is a member of ops", "ALTER ROLE ops_clone NOSUPERUSER"},
				}
			} else {
				db.Exec(t, "GRANT ALL PRIVILEGES ON *.* TO 'ops_clone'@'%'")
				steps = []struct{ what, sql string }{
					{"an ops_clone with grants ops lacks", "REVOKE ALL PRIVILEGES ON *.* FROM 'ops_clone'@'%'"},
				}
			}
			for _, s := range steps {
				pending, err := setSecret("ops", opsPW)
				wantRefused(s.what, err, opsPW, clonePW, pending)
				wantLogin(t, db, "ops_clone", clonePW)
				wantLoginRefused(t, db, "ops_clone", pending)
				db.Exec(t, s.sql)
			}
			// Now ops_clone is what the rotator makes: a member of ops
			// with nothing more (PostgreSQL), or ops's grants (MariaDB).
			pending, err = setSecret("ops", opsPW)
			if err != nil {
				t.Fatalf("setSecret for ops once ops_clone is its clone: %v", err)
			}
			wantLogin(t, db, "ops_clone", pending)
			wantLogin(t, db, "ops", opsPW)
		})
	}
}

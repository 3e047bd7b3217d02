package storage_test

import (
	"strings"
	"testing"

	"github.com/cofferhq/coffer/storage"
)

func TestValidName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		want bool
	}{
		{"", false},
		{"a", true},
		{strings.Repeat("a", 512), true},
		{strings.Repeat("a", 513), false},
		{"MyApp/Prod_DB+key=1.2@host-3", true},
		{"0123456789", true},
		{"ABCxyz", true},
		{"a/b", true},
		{"a_b", true},
		{"a+b", true},
		{"a=b", true},
		{"a.b", true},
		{"a@b", true},
		{"a-b", true},
		{"/", true},
		{"a b", false},
		{"a:b", false},
		{"arn:aws:secretsmanager:eu-west-1:123456789012:secret:x", false},
		{"a!b", false},
		{"a*b", false},
		{"a#b", false},
		{"a,b", false},
		{"a\\b", false},
		{"a\tb", false},
		{"a\nb", false},
		{"a\x00b", false},
		{"café", false},
		{strings.Repeat("a", 511) + " ", false},
	}
	for _, tt := range tests {
		if got := storage.ValidName(tt.name); got != tt.want {
			t.Errorf("ValidName(%q) (len %d) = %v, want %v", tt.name, len(tt.name), got, tt.want)
		}
	}
}

func TestSecretARN(t *testing.T) {
	t.Parallel()
	got := storage.SecretARN("aws", "eu-west-1", "123456789012", "app/db", "AbC123")
	if want := "arn:aws:secretsmanager:eu-west-1:123456789012:secret:app/db-AbC123"; got != want {
		t.Fatalf("SecretARN = %q, want %q", got, want)
	}
	if got, want := storage.ARNPrefix("aws-cn", "cn-north-1", "1"), "arn:aws-cn:secretsmanager:cn-north-1:1:secret:"; got != want {
		t.Fatalf("ARNPrefix = %q, want %q", got, want)
	}
}

func TestParseARN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want storage.ARNParts
		ok   bool
	}{
		{"arn:aws:secretsmanager:eu-west-1:123456789012:secret:app/db-AbC123",
			storage.ARNParts{Partition: "aws", Region: "eu-west-1", Account: "123456789012", Rest: "app/db-AbC123"}, true},
		{"arn:aws:secretsmanager:eu-west-1:123456789012:secret:app/db",
			storage.ARNParts{Partition: "aws", Region: "eu-west-1", Account: "123456789012", Rest: "app/db"}, true},
		{"arn:aws-cn:secretsmanager:cn-north-1:000000000000:secret:x",
			storage.ARNParts{Partition: "aws-cn", Region: "cn-north-1", Account: "000000000000", Rest: "x"}, true},
		{"arn:aws:secretsmanager:eu-west-1:123456789012:secret:", storage.ARNParts{}, false},
		{"arn:aws:secretsmanager:eu-west-1:123456789012:secret", storage.ARNParts{}, false},
		{"arn:aws:secretsmanager:eu-west-1:123456789012:parameter:x", storage.ARNParts{}, false},
		{"arn:aws:ssm:eu-west-1:123456789012:secret:x", storage.ARNParts{}, false},
		{"arx:aws:secretsmanager:eu-west-1:123456789012:secret:x", storage.ARNParts{}, false},
		{"app/db", storage.ARNParts{}, false},
		{"", storage.ARNParts{}, false},
	}
	for _, tt := range tests {
		got, ok := storage.ParseARN(tt.in)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseARN(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestWithRegion(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, region, want string }{
		{"arn:aws:secretsmanager:eu-west-1:123456789012:secret:app/db-AbC123", "us-east-2",
			"arn:aws:secretsmanager:us-east-2:123456789012:secret:app/db-AbC123"},
		{"arn:aws:secretsmanager:eu-west-1:123456789012:secret:a", "eu-west-1",
			"arn:aws:secretsmanager:eu-west-1:123456789012:secret:a"},
		{"not-an-arn", "us-east-2", "not-an-arn"},
	}
	for _, tt := range tests {
		if got := storage.WithRegion(tt.in, tt.region); got != tt.want {
			t.Errorf("WithRegion(%q, %q) = %q, want %q", tt.in, tt.region, got, tt.want)
		}
	}
}

// TestSecretLookup resolves names, full ARNs and partial ARNs the way
// SecretId does in AWS.
func TestSecretLookup(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.ok(0, createOp("app/db", "AbC123"))
	// A name that itself ends like an ARN suffix, which AWS warns about.
	f.ok(1, createOp("svc-abcdef", "XyZ789"))
	f.ok(2, createOp("app", "Qrs456"))

	tests := []struct {
		ref  string
		want string // name, or "" for not found
	}{
		{"app/db", "app/db"},
		{arnOf("app/db", "AbC123"), "app/db"},
		{"arn:aws:secretsmanager:eu-west-1:123456789012:secret:app/db", "app/db"},
		{"svc-abcdef", "svc-abcdef"},
		{arnOf("svc-abcdef", "XyZ789"), "svc-abcdef"},
		{"arn:aws:secretsmanager:eu-west-1:123456789012:secret:svc-abcdef", "svc-abcdef"},
		{"app", "app"},
		{arnOf("app", "Qrs456"), "app"},
		{"arn:aws:secretsmanager:eu-west-1:123456789012:secret:app", "app"},

		{"", ""},
		{"app/", ""},
		{"app/d", ""},
		{"App/db", ""},
		{"app/db-AbC123", ""}, // the name plus suffix is not a name
		{arnOf("app/db", "AbC124"), ""},
		{arnOf("app/db", "abc123"), ""},
		{"arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbC123", ""},
		{"arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db", ""},
		{"arn:aws:secretsmanager:eu-west-1:999999999999:secret:app/db-AbC123", ""},
		{"arn:aws-cn:secretsmanager:eu-west-1:123456789012:secret:app/db", ""},
		{"arn:aws:secretsmanager:eu-west-1:123456789012:secret:app/d", ""},
		{"arn:aws:secretsmanager:eu-west-1:123456789012:secret:app/db-AbC12", ""},
		{"arn:aws:secretsmanager:eu-west-1:123456789012:secret:app/db-AbC1234", ""},
		{"arn:aws:secretsmanager:eu-west-1:123456789012:secret:", ""},
		{"arn:aws:secretsmanager:eu-west-1:123456789012:secret:svc", ""},
	}
	for _, tt := range tests {
		sec, err := f.store.Secret(tt.ref)
		if tt.want == "" {
			if err == nil {
				t.Errorf("Secret(%q) found %q, want not found", tt.ref, sec.GetName())
				continue
			}
			wantErr(t, err, storage.ErrSecretNotFound, "Secrets Manager can't find the specified secret.")
			continue
		}
		if err != nil {
			t.Errorf("Secret(%q): %v, want %q", tt.ref, err, tt.want)
			continue
		}
		if sec.GetName() != tt.want {
			t.Errorf("Secret(%q) = %q, want %q", tt.ref, sec.GetName(), tt.want)
		}
	}

	// SecretValue resolves the same way.
	if _, err := f.store.SecretValue(arnOf("app/db", "AbC124"), "", ""); err == nil {
		t.Fatal("SecretValue with a wrong suffix found a secret")
	} else {
		wantErr(t, err, storage.ErrSecretNotFound, "Secrets Manager can't find the specified secret.")
	}
}

package server

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// looksSecret matches request field names that suggest the field could hold
// a secret, a credential or key material.
var looksSecret = regexp.MustCompile(`(?i)secret|passw|token|value|key|credential|private|auth|signature|cert|pem|salt|seed|url|uri|dsn|connection|cookie|bearer|hmac`)

// auditClearFields are request fields whose names match looksSecret but
// that are safe to record in clear: they name things, they hold none.
var auditClearFields = map[protoreflect.Name]string{
	"secret_id":      "names a secret",
	"secret_id_list": "names secrets (recorded as a count)",
	"kms_key_id":     "names a key, holds no key material",
	"access_key_id":  "the public half of an access key",
	"next_token":     "a pagination cursor",
	"tag_keys":       "tag names (recorded as a count)",

	"key_id":                   "names a KMS key (id, ARN or alias), holds no key material",
	"target_key_id":            "names a KMS key, holds no key material",
	"key_spec":                 "the kind of key (SYMMETRIC_DEFAULT)",
	"customer_master_key_spec": "the kind of key (SYMMETRIC_DEFAULT)",
	"key_usage":                "what a key is for (ENCRYPT_DECRYPT)",
	"new_key_label":            "the label of an HSM key (SealService.Rekey), holds no key material",
}

// TestAuditParamsNeverRecordASecret walks every request message of every
// service in the coffer.v1 API (the services the Gate audits) and gives
// each field a marker. A field whose name suggests a secret must not show
// its marker in the recorded parameters unless it is on auditClearFields;
// a field in sensitiveFields must be recorded as its HMAC; nothing nested
// is recorded. A new request field named like a secret thus fails here
// until it is HMAC'd, omitted, or allow-listed with a reason.
func TestAuditParamsNeverRecordASecret(t *testing.T) {
	hash := func(v string) string {
		sum := sha256.Sum256([]byte(v))
		return "hmac-sha256:" + hex.EncodeToString(sum[:])
	}
	var services []string
	seen := map[protoreflect.Name]bool{}
	protoregistry.GlobalFiles.RangeFilesByPackage("coffer.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			services = append(services, string(sd.Name()))
			for j := range sd.Methods().Len() {
				md := sd.Methods().Get(j)
				in := md.Input()
				for k := range in.Fields().Len() {
					f := in.Fields().Get(k)
					seen[f.Name()] = true
					checkAuditedField(t, string(sd.Name())+"/"+string(md.Name()), in, f, hash)
				}
			}
		}
		return true
	})
	for _, want := range []string{"SecretsManagerService", "AdminService", "IAMService", "RotationService", "RegionService"} {
		if !slices.Contains(services, want) {
			t.Errorf("the walk found services %v, not %s", services, want)
		}
	}
	for name := range auditClearFields {
		if !seen[name] {
			t.Errorf("auditClearFields lists %s, which no request has any more", name)
		}
	}
}

func checkAuditedField(t *testing.T, method string, in protoreflect.MessageDescriptor, f protoreflect.FieldDescriptor, hash func(string) string) {
	t.Helper()
	marker := "MARKER-" + string(f.Name()) + "-7f3a9c"
	m := dynamicpb.NewMessage(in)
	nested := false
	switch {
	case f.IsMap():
		mp := m.Mutable(f).Map()
		k := protoreflect.ValueOfString(marker).MapKey()
		switch f.MapValue().Kind() {
		case protoreflect.StringKind:
			mp.Set(k, protoreflect.ValueOfString(marker))
		case protoreflect.MessageKind:
			v := mp.NewValue()
			fillStrings(v.Message(), marker)
			mp.Set(k, v)
		default:
			return
		}
	case f.IsList():
		l := m.Mutable(f).List()
		switch f.Kind() {
		case protoreflect.StringKind:
			l.Append(protoreflect.ValueOfString(marker))
		case protoreflect.BytesKind:
			l.Append(protoreflect.ValueOfBytes([]byte(marker)))
		case protoreflect.MessageKind:
			v := l.NewElement()
			fillStrings(v.Message(), marker)
			l.Append(v)
		default:
			return
		}
	case f.Kind() == protoreflect.StringKind:
		m.Set(f, protoreflect.ValueOfString(marker))
	case f.Kind() == protoreflect.BytesKind:
		m.Set(f, protoreflect.ValueOfBytes([]byte(marker)))
	case f.Kind() == protoreflect.MessageKind:
		fillStrings(m.Mutable(f).Message(), marker)
		nested = true
	default:
		return
	}
	params := auditParams(m, hash)
	leaked := ""
	for k, v := range params {
		if strings.Contains(v, marker) || strings.Contains(k, marker) {
			leaked = k
		}
	}
	name := f.Name()
	switch {
	case leaked != "" && nested:
		t.Errorf("%s: nested field %s is recorded (%s); nested messages must not be", method, name, leaked)
	case leaked != "" && looksSecret.MatchString(string(name)) && auditClearFields[name] == "":
		t.Errorf("%s: field %s may hold a secret and is recorded in clear as %s=%q: HMAC it (sensitiveFields), omit it (omittedFields), or add it to auditClearFields with the reason it is safe",
			method, name, leaked, params[leaked])
	}
	if sensitiveFields[name] && !f.IsList() && !f.IsMap() && params[string(name)] != hash(marker) {
		t.Errorf("%s: sensitive field %s recorded as %q, want its HMAC", method, name, params[string(name)])
	}
}

// fillStrings sets every singular string and bytes field of m, recursively.
func fillStrings(m protoreflect.Message, marker string) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		if f.IsList() || f.IsMap() || f.ContainingOneof() != nil && m.WhichOneof(f.ContainingOneof()) != nil {
			continue
		}
		switch f.Kind() {
		case protoreflect.StringKind:
			m.Set(f, protoreflect.ValueOfString(marker))
		case protoreflect.BytesKind:
			m.Set(f, protoreflect.ValueOfBytes([]byte(marker)))
		case protoreflect.MessageKind:
			if f.Message().FullName() != m.Descriptor().FullName() {
				fillStrings(m.Mutable(f).Message(), marker)
			}
		}
	}
}

func TestAuditParamsKeepCredentialsOutOfURLs(t *testing.T) {
	hash := func(v string) string { return "h(" + string(rune('0'+len(v)%10)) + ")" }
	full := "https://svc-user:hunter2@rotator.internal:8443/hooks/T00/B00/XXSECRETPATH?code=QUERYKEY#frag"
	p := auditParams(&cofferv1.RegisterFunctionRequest{Name: "rot", Url: full, SharedSecret: "k3y-material"}, hash)
	if p["url"] != "https://rotator.internal:8443/…" || p["url.hmac"] != hash(full) {
		t.Errorf("url recorded as %q and %q, want the origin and the HMAC of the whole URL", p["url"], p["url.hmac"])
	}
	if p["shared_secret"] != hash("k3y-material") {
		t.Errorf("shared_secret recorded as %q", p["shared_secret"])
	}
	for k, v := range p {
		for _, secret := range []string{"hunter2", "svc-user", "XXSECRETPATH", "QUERYKEY", "k3y-material"} {
			if strings.Contains(v, secret) {
				t.Errorf("param %s=%q holds %q", k, v, secret)
			}
		}
	}
	// Any clear parameter loses a URL's userinfo, wherever it is quoted.
	desc := "copy of postgres://admin:p@ss@db.internal:5432/app, see also https://x.test/ok"
	p = auditParams(&cofferv1.CreateSecretRequest{Name: "app/db", Description: desc}, hash)
	if want := "copy of postgres://REDACTED@db.internal:5432/app, see also https://x.test/ok"; p["description"] != want {
		t.Errorf("description recorded as %q, want %q", p["description"], want)
	}
	if p := auditParams(&cofferv1.RegisterFunctionRequest{Url: "not a url"}, hash); p["url"] != "" || p["url.hmac"] != hash("not a url") {
		t.Errorf("an unparsable url recorded as %v, want only its HMAC", p)
	}
}

package sigv4

import (
	"context"
	"testing"
)

// BenchmarkVerify verifies the request aws-sdk-go-v2 sends for
// GetSecretValue.
func BenchmarkVerify(b *testing.B) {
	body := []byte(getSecretValueBody)
	r := newSDKRequest(b, "https://secretsmanager.eu-west-1.coffer.internal/", body)
	sdkSign(b, r, body, alice, "eu-west-1", signedAt)
	v := newVerifier(signedAt)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := v.Verify(ctx, r, body); err != nil {
			b.Fatal(err)
		}
	}
}

package dbtest

import (
	"context"
	"testing"
)

// TestServersRefuseWrongPasswords checks what every rotator test relies
// on: the servers check passwords on loopback TCP.
func TestServersRefuseWrongPasswords(t *testing.T) {
	for name, start := range map[string]func(testing.TB) *Server{"postgres": StartPostgres, "mariadb": StartMariaDB} {
		t.Run(name, func(t *testing.T) {
			s := start(t)
			ctx := context.Background()
			if err := s.Login(ctx, s.AdminUser, s.AdminPassword); err != nil {
				t.Fatalf("admin login: %v", err)
			}
			err := s.Login(ctx, s.AdminUser, s.AdminPassword+"x")
			if !IsAuthError(err) {
				t.Fatalf("login with a wrong password: err = %v, want an authentication failure", err)
			}
		})
	}
}

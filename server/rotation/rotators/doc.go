// Package rotators holds Coffer's built-in rotation functions for database
// credentials: coffer:rotator/postgresql-single-user, postgresql-multi-user,
// mysql-single-user and mysql-multi-user. Each runs one step of the
// rotation protocol the way the AWS RDS rotation Lambda templates do, for
// secrets in the AWS RDS JSON shape, calling back into the Secrets Manager
// API through rotation.SecretsAPI and into the database with its drivers.
//
// It owns what happens on the database and in the secret's versions during
// one step; scheduling, retries and progress belong to the rotation engine.
// It must never log a secret value or return one in an error: every error
// it returns has the passwords it handled scrubbed from its text.
package rotators

// Package password owns GetRandomPassword: it turns the AWS request options
// (length, excluded characters and character classes, space, and whether every
// included class must appear) into a password drawn from crypto/rand, with
// the same character classes, defaults and limits as AWS Secrets Manager. It
// must never use a predictable or biased source of randomness (math/rand,
// modulo reduction of random bytes), never log or keep the passwords it makes,
// and never decide how its errors reach callers: it returns documented
// sentinels, and server/ maps them to AWS error types.
package password

// Package rotation drives secret rotation: the four-step protocol
// (createSecret, setSecret, testSecret, finishSecret) run by the region
// leader against a rotation function, on the schedule a secret's
// RotationRules give.
//
// Rotation progress lives in the replicated state machine, never only in
// this package's memory, so a new leader resumes a rotation its predecessor
// started and never creates a second AWSPENDING version. This package must
// never log or return a secret value.
package rotation

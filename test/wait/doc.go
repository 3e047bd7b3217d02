// Package wait is the one way Coffer's tests wait: poll a condition until
// it holds, and fail the test with the condition's last answer once a
// generous bound has passed. The bound is a limit for giving up, never a
// claim about speed; tests must not assert on how long anything took.
package wait

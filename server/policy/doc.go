// Package policy owns IAM JSON policy documents as Secrets Manager resource
// policies use them: it parses the grammar's flexible forms into one
// normalised Document, runs the ValidateResourcePolicy checks (syntax and
// public access), decides whether a document would make a secret public
// for BlockPublicPolicy, and evaluates requests against identity and
// resource policies as IAM does within one account (Evaluate). It is pure: it must never store documents, look up
// secrets, principals or accounts, panic on any input, or map its errors to
// AWS error types, which is server/'s job.
package policy

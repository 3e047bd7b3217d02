package server

import (
	"context"
	"errors"
	"strings"
	"unicode/utf8"

	raftv1 "github.com/cofferhq/coffer/proto/coffer/raft/v1"
	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
	"github.com/cofferhq/coffer/server/password"
	"github.com/cofferhq/coffer/server/policy"
)

// PutResourcePolicy implements the AWS operation. The document is parsed
// here; only a well-formed one reaches the log. A condition on a key Coffer
// never sets is attached but warned about (Warnings, a Coffer extension).
func (s *Service) PutResourcePolicy(ctx context.Context, req *cofferv1.PutResourcePolicyRequest) (*cofferv1.PutResourcePolicyResponse, error) {
	if e := validateSecretID(req.GetSecretId()); e != nil {
		return nil, e
	}
	if req.GetResourcePolicy() == "" {
		return nil, apiErr(TypeInvalidParameter, "You must provide a ResourcePolicy.")
	}
	if e := checkLength("resourcePolicy", req.GetResourcePolicy(), 1, policy.MaxDocumentLength); e != nil {
		return nil, e
	}
	// AWS looks the secret up before it reads the policy: a missing
	// secret is ResourceNotFoundException whatever the document says.
	sec, err := s.liveSecret(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	// A resource policy names a Principal in every statement, as AWS
	// requires; the public check then asks whether one lets in anyone.
	doc, err := policy.ParseResource(req.GetResourcePolicy())
	if err != nil {
		return nil, malformed(err)
	}
	if req.GetBlockPublicPolicy() && doc.IsPublic() {
		return nil, apiErr(TypePublicPolicy, "This resource policy contains a statement that grants broad access to the secret, and BlockPublicPolicy is set.")
	}
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_PutResourcePolicy{PutResourcePolicy: &raftv1.PutResourcePolicy{
		Arn: sec.GetArn(), ResourcePolicy: req.GetResourcePolicy(),
	}}})
	if err != nil {
		return nil, err
	}
	warnings := conditionKeyWarnings(doc)
	if len(warnings) > 0 {
		s.log.Warn("resource policy names condition keys Coffer never sets", "arn", res.ARN, "warnings", warnings)
	}
	return &cofferv1.PutResourcePolicyResponse{Arn: res.ARN, Name: res.Name, Warnings: warnings}, nil
}

func malformed(err error) *APIError {
	msg := err.Error()
	if errors.Is(err, policy.ErrMalformed) {
		msg = strings.TrimPrefix(msg, policy.ErrMalformed.Error()+": ")
	}
	return apiErr(TypeMalformedPolicy, "This resource policy contains an unsupported or malformed document: %s", msg)
}

// DeleteResourcePolicy implements the AWS operation.
func (s *Service) DeleteResourcePolicy(ctx context.Context, req *cofferv1.DeleteResourcePolicyRequest) (*cofferv1.DeleteResourcePolicyResponse, error) {
	if e := validateSecretID(req.GetSecretId()); e != nil {
		return nil, e
	}
	sec, err := s.liveSecret(ctx, req.GetSecretId())
	if err != nil {
		return nil, err
	}
	res, err := s.propose(ctx, &raftv1.Command{Op: &raftv1.Command_DeleteResourcePolicy{DeleteResourcePolicy: &raftv1.DeleteResourcePolicy{
		Arn: sec.GetArn(),
	}}})
	if err != nil {
		return nil, err
	}
	return &cofferv1.DeleteResourcePolicyResponse{Arn: res.ARN, Name: res.Name}, nil
}

// ValidateResourcePolicy implements the AWS operation: syntax and
// broad-access checks, and Coffer's check for condition keys it never sets
// (CONDITION_KEY_CHECK), reported as findings rather than as an error.
func (s *Service) ValidateResourcePolicy(ctx context.Context, req *cofferv1.ValidateResourcePolicyRequest) (*cofferv1.ValidateResourcePolicyResponse, error) {
	if req.GetResourcePolicy() == "" {
		return nil, apiErr(TypeInvalidParameter, "You must provide a ResourcePolicy.")
	}
	if !utf8.ValidString(req.GetResourcePolicy()) {
		return nil, validationErr("resourcePolicy", "Member must be valid UTF-8 text")
	}
	if req.GetSecretId() != "" {
		if _, err := s.readSecret(ctx, req.GetSecretId()); err != nil {
			return nil, err
		}
	}
	resp := &cofferv1.ValidateResourcePolicyResponse{PolicyValidationPassed: true}
	findings := policy.Validate(req.GetResourcePolicy())
	if doc, err := policy.ParseResource(req.GetResourcePolicy()); err == nil {
		findings = append(findings, doc.UnsetConditionKeys(SetsConditionKey)...)
	}
	for _, f := range findings {
		resp.PolicyValidationPassed = false
		resp.ValidationErrors = append(resp.ValidationErrors, &cofferv1.ValidationError{CheckName: f.CheckName, ErrorMessage: f.ErrorMessage})
	}
	return resp, nil
}

// GetRandomPassword implements the AWS operation. The password is made here
// and returned; it is never stored or logged.
func (s *Service) GetRandomPassword(_ context.Context, req *cofferv1.GetRandomPasswordRequest) (*cofferv1.GetRandomPasswordResponse, error) {
	o := password.Defaults()
	if req.PasswordLength != nil {
		o.Length = req.GetPasswordLength()
		if o.Length > password.MaxLength {
			return nil, validationValueErr("passwordLength", o.Length, "Member must have value less than or equal to 4096")
		}
		if o.Length < password.MinLength {
			return nil, validationValueErr("passwordLength", o.Length, "Member must have value greater than or equal to 1")
		}
	}
	if e := checkLength("excludeCharacters", req.GetExcludeCharacters(), 0, 4096); e != nil {
		return nil, e
	}
	o.ExcludeCharacters = req.GetExcludeCharacters()
	o.ExcludeNumbers = req.GetExcludeNumbers()
	o.ExcludePunctuation = req.GetExcludePunctuation()
	o.ExcludeUppercase = req.GetExcludeUppercase()
	o.ExcludeLowercase = req.GetExcludeLowercase()
	o.IncludeSpace = req.GetIncludeSpace()
	if req.RequireEachIncludedType != nil {
		o.RequireEachIncludedType = req.GetRequireEachIncludedType()
	}
	pw, err := password.Generate(o)
	if err != nil {
		return nil, apiErr(TypeInvalidParameter, "%s", err.Error())
	}
	return &cofferv1.GetRandomPasswordResponse{RandomPassword: pw}, nil
}

package rotation

import (
	"context"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// Step is one of the four steps of the rotation protocol, spelled as AWS
// spells it in the Lambda event.
type Step string

// The steps, in the order a rotation runs them.
const (
	StepCreateSecret Step = "createSecret"
	StepSetSecret    Step = "setSecret"
	StepTestSecret   Step = "testSecret"
	StepFinishSecret Step = "finishSecret"
)

// Steps lists the steps in order.
var Steps = []Step{StepCreateSecret, StepSetSecret, StepTestSecret, StepFinishSecret}

// Event is what a rotation function receives for one step: the AWS Lambda
// rotation event, field for field.
type Event struct {
	Step               Step   `json:"Step"`
	SecretID           string `json:"SecretId"`
	ClientRequestToken string `json:"ClientRequestToken"`
}

// Function is a rotation function: an HTTP endpoint or a built-in rotator.
// Invoke runs one step and returns nil when the step succeeded.
type Function interface {
	Invoke(ctx context.Context, ev Event) error
}

// SecretsAPI is the part of the Secrets Manager API a rotation function
// calls back into, the same calls an AWS rotation Lambda makes.
// *server.Service satisfies it; calls made through it are the system's own
// and are not subject to a caller's policies.
type SecretsAPI interface {
	DescribeSecret(context.Context, *cofferv1.DescribeSecretRequest) (*cofferv1.DescribeSecretResponse, error)
	GetSecretValue(context.Context, *cofferv1.GetSecretValueRequest) (*cofferv1.GetSecretValueResponse, error)
	PutSecretValue(context.Context, *cofferv1.PutSecretValueRequest) (*cofferv1.PutSecretValueResponse, error)
	UpdateSecretVersionStage(context.Context, *cofferv1.UpdateSecretVersionStageRequest) (*cofferv1.UpdateSecretVersionStageResponse, error)
	GetRandomPassword(context.Context, *cofferv1.GetRandomPasswordRequest) (*cofferv1.GetRandomPasswordResponse, error)
}

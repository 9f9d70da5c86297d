package beacon

import "context"

// ACLs is what a client can learn of the agent's ACL system.
type ACLs int

const (
	// ACLsUnknown: the agent could not be asked.
	ACLsUnknown ACLs = iota
	// ACLsDisabled: the agent enforces no ACLs; every answer is complete.
	ACLsDisabled
	// ACLsNoToken: ACLs are on and the client's token is missing or unknown
	// to Consul, so reads get what the anonymous token may see, and an
	// empty answer may only mean the service is hidden.
	ACLsNoToken
	// ACLsToken: ACLs are on and Consul knows the client's token.
	ACLsToken
)

func (a ACLs) String() string {
	switch a {
	case ACLsDisabled:
		return "disabled"
	case ACLsNoToken:
		return "enabled, no valid token"
	case ACLsToken:
		return "enabled, token valid"
	default:
		return "unknown"
	}
}

// ACLProber is implemented by backends that can ask their agent about
// ACLs (GET /v1/acl/token/self). Discovery uses it to tell a service
// scaled to zero from one the token may not see: Consul answers both with
// 200 and an empty list.
type ACLProber interface {
	ProbeACLs(ctx context.Context) (ACLs, error)
}

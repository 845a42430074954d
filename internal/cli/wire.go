package cli

import (
	"net/netip"

	"github.com/cordon-dev/cordon/internal/policy"
	"github.com/cordon-dev/cordon/internal/proxy"
)

// proxyPolicy lets the proxy consult the policy engine. Each call takes
// the engine's current view, so a rule changed by another process applies
// to the next connection or request.
type proxyPolicy struct {
	engine *policy.Engine
}

var _ proxy.Policy = proxyPolicy{}

func (pp proxyPolicy) Connect(sandbox, host string, port int) proxy.Verdict {
	v, err := pp.engine.View()
	if err != nil {
		return brokenPolicy(err)
	}
	return verdict(v.Connect(sandbox, host, port))
}

func (pp proxyPolicy) Request(sandbox, host string, port int, method, path string) proxy.Verdict {
	v, err := pp.engine.View()
	if err != nil {
		return brokenPolicy(err)
	}
	return verdict(v.Request(sandbox, host, port, method, path))
}

func (pp proxyPolicy) CheckAddress(sandbox, host string, port int, addr netip.Addr) error {
	v, err := pp.engine.View()
	if err != nil {
		return err
	}
	return v.CheckAddress(sandbox, host, port, addr)
}

// brokenPolicy refuses everything while the policy file cannot be read:
// failing closed, with the reason, rather than allowing by default.
func brokenPolicy(err error) proxy.Verdict {
	return proxy.Verdict{Action: proxy.Deny, Reason: "the policy cannot be read: " + err.Error()}
}

func verdict(d policy.Decision) proxy.Verdict {
	v := proxy.Verdict{Reason: d.Reason(), Deferred: d.Deferred, Rule: ruleName(d)}
	switch d.Action {
	case policy.Allow:
		v.Action = proxy.Allow
	case policy.Bypass:
		v.Action = proxy.Bypass
	default:
		v.Action = proxy.Deny
	}
	return v
}

// ruleName names what decided, for the request log: a rule's ID, the
// preset, or the provider whose host it is.
func ruleName(d policy.Decision) string {
	switch d.Source {
	case policy.SourceRule:
		if d.Rule != nil {
			return d.Rule.ID
		}
	case policy.SourcePreset:
		return "preset"
	case policy.SourceProvider:
		if d.Provider != nil {
			return "provider:" + d.Provider.Name
		}
	}
	return ""
}

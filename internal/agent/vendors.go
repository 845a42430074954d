package agent

import "encoding/json"

// claudeLaunch turns off Claude Code's updater and the traffic it sends
// besides the model API: telemetry, error reports and update checks. The
// default policy refuses those hosts, so each attempt would only add a
// refusal to the request log.
func claudeLaunch(ctx Context) Launch {
	return Launch{Env: map[string]string{
		"DISABLE_AUTOUPDATER":                      "1",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
	}}
}

// codexLaunch points Codex at the registered provider that
// OPENAI_BASE_URL names. Codex reads its base URL from its configuration
// only, not from the variable, and takes configuration values as -c
// options before any subcommand.
func codexLaunch(ctx Context) Launch {
	base := ctx.Env["OPENAI_BASE_URL"]
	if base == "" {
		return Launch{}
	}
	// A JSON string is a valid TOML string, which is what -c expects.
	quoted, _ := json.Marshal(base)
	return Launch{Args: []string{"-c", "openai_base_url=" + string(quoted)}}
}

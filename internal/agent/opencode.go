package agent

import (
	"encoding/json"
	"strings"
)

// opencodeLaunch keeps opencode from reaching for hosts the default policy
// refuses, and describes the registered providers to it.
func opencodeLaunch(ctx Context) Launch {
	env := map[string]string{
		// An update would land in the sandbox's own layer, not on the
		// host, and the download is refused anyway.
		"OPENCODE_DISABLE_AUTOUPDATE": "1",
		// The model catalog is fetched from models.dev at every start;
		// the program carries a copy of its own, which is used instead.
		"OPENCODE_DISABLE_MODELS_FETCH": "1",
	}
	if cfg := opencodeConfig(ctx); cfg != "" {
		env["OPENCODE_CONFIG_CONTENT"] = cfg
	}
	return Launch{Env: env}
}

// opencodeConfig returns opencode's configuration, as JSON, for the
// registered providers that declare an API style, or "" when there are
// none. opencode merges it over the user's own configuration files, so a
// user's model list for the same provider is kept.
//
// opencode offers a custom provider's models only when its configuration
// names them, and cordon does not ask the provider for its list: the
// models named with -m or --model on the command line are added.
func opencodeConfig(ctx Context) string {
	type options struct {
		BaseURL string `json:"baseURL"`
		APIKey  string `json:"apiKey,omitempty"`
	}
	type providerConfig struct {
		NPM     string              `json:"npm"`
		Name    string              `json:"name"`
		Options options             `json:"options"`
		Models  map[string]struct{} `json:"models,omitempty"`
	}

	providers := map[string]providerConfig{}
	for _, p := range ctx.Providers {
		c := providerConfig{Name: p.Name, Options: options{BaseURL: p.BaseURL, APIKey: p.Key}}
		switch p.API {
		case "openai":
			c.NPM = "@ai-sdk/openai-compatible"
		case "anthropic":
			// Anthropic's SDKs take the URL with its version path; the
			// ANTHROPIC_BASE_URL convention leaves it out.
			c.NPM = "@ai-sdk/anthropic"
			c.Options.BaseURL = strings.TrimSuffix(p.BaseURL, "/") + "/v1"
		default:
			continue
		}
		providers[p.Name] = c
	}
	if len(providers) == 0 {
		return ""
	}

	for _, m := range modelArgs(ctx.Args) {
		name, model, ok := strings.Cut(m, "/")
		c, known := providers[name]
		if !ok || !known || model == "" {
			continue
		}
		if c.Models == nil {
			c.Models = map[string]struct{}{}
		}
		c.Models[model] = struct{}{}
		providers[name] = c
	}

	data, err := json.Marshal(map[string]any{"provider": providers})
	if err != nil {
		panic("agent: encoding opencode configuration: " + err.Error())
	}
	return string(data)
}

// modelArgs returns the values of -m and --model options in args, in the
// forms "-m X", "-m=X", "--model X" and "--model=X".
func modelArgs(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if a == "-m" || a == "--model" {
			if i+1 < len(args) {
				out = append(out, args[i+1])
				i++
			}
			continue
		}
		for _, prefix := range []string{"-m=", "--model="} {
			if v, ok := strings.CutPrefix(a, prefix); ok {
				out = append(out, v)
			}
		}
	}
	return out
}

package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/cordon-dev/cordon/internal/provider"
)

func TestLookup(t *testing.T) {
	tests := []struct {
		name    string
		program string
		pkg     string
		wantErr string
	}{
		{name: "shell"},
		{name: "opencode", program: "opencode", pkg: "opencode-ai"},
		{name: "claude", program: "claude", pkg: "@anthropic-ai/claude-code"},
		{name: "codex", program: "codex", pkg: "@openai/codex"},
		{name: "gemini", program: "gemini", pkg: "@google/gemini-cli"},
		{name: "nosuch", wantErr: `unknown agent "nosuch"; the presets are shell, opencode, claude, codex, gemini`},
		{name: "", wantErr: `unknown agent ""; the presets are shell, opencode, claude, codex, gemini`},
		{name: "OpenCode", wantErr: `unknown agent "OpenCode"`},
		{name: strings.Repeat("a", 1<<16), wantErr: `unknown agent "` + strings.Repeat("a", 40) + `..."; the presets`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.20s", tt.name), func(t *testing.T) {
			p, err := Lookup(tt.name)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("Lookup(%q) error = %v, want %q", tt.name, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Name != tt.name || p.Program != tt.program || p.Package != tt.pkg || p.Title == "" {
				t.Errorf("Lookup(%q) = %+v", tt.name, p)
			}
		})
	}
}

// Every provider a preset names is in cordon's catalog, so a typo cannot
// hide.
func TestPresetProvidersAreBuiltins(t *testing.T) {
	var builtins []string
	for _, p := range provider.Builtins() {
		builtins = append(builtins, p.Name)
	}
	for _, p := range Presets() {
		if p.Program != "" && len(p.Providers) == 0 {
			t.Errorf("%s names no providers", p.Name)
		}
		for _, name := range p.Providers {
			if !slices.Contains(builtins, name) {
				t.Errorf("%s names provider %q, which is not built in", p.Name, name)
			}
		}
	}
}

func TestCommand(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "codex"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	noShell := func(string) string { return "" }
	const missing = " is not installed; install it with: npm install -g "

	tests := []struct {
		agent   string
		args    []string
		want    []string
		wantErr string
	}{
		{agent: "codex", args: []string{"exec", "hi"},
			want: []string{filepath.Join(bin, "codex"), "exec", "hi"}},
		{agent: "opencode", wantErr: "opencode" + missing + "opencode-ai"},
		{agent: "claude", wantErr: "claude" + missing + "@anthropic-ai/claude-code"},
		{agent: "gemini", wantErr: "gemini" + missing + "@google/gemini-cli"},
	}
	for _, tt := range tests {
		t.Run(tt.agent, func(t *testing.T) {
			p, err := Lookup(tt.agent)
			if err != nil {
				t.Fatal(err)
			}
			got, err := p.Command(tt.args, noShell)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Command error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Command (-want +got):\n%s", diff)
			}
		})
	}
}

func TestShellCommand(t *testing.T) {
	sh, err := os.Executable() // any existing file stands in for a shell
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		shell string
		want  string
	}{
		{"user's shell", sh, sh},
		{"relative path", "bash", ""},
		{"missing", "/nonexistent/shell", ""},
		{"directory", "/", ""},
	}
	p, _ := Lookup("shell")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.Command([]string{"-c", "true"}, func(k string) string {
				if k == "SHELL" {
					return tt.shell
				}
				return ""
			})
			if err != nil {
				t.Fatal(err)
			}
			if tt.want != "" && got[0] != tt.want {
				t.Errorf("shell = %q, want %q", got[0], tt.want)
			}
			if tt.want == "" && got[0] == tt.shell {
				t.Errorf("shell = %q, want a fallback", got[0])
			}
			if !slices.Equal(got[1:], []string{"-c", "true"}) {
				t.Errorf("args = %q", got[1:])
			}
		})
	}
}

func TestLaunch(t *testing.T) {
	const key = "cordon-placeholder-key"
	llm := Provider{Name: "my-llm", BaseURL: "https://llm.example.com/v1", API: "openai", Key: key}
	keyless := Provider{Name: "local", BaseURL: "http://10.0.0.5:8000/v1", API: "openai"}
	anth := Provider{Name: "gateway", BaseURL: "https://gw.example.com/anthropic/", API: "anthropic", Key: key}
	opencodeBase := map[string]string{
		"OPENCODE_DISABLE_AUTOUPDATE":   "1",
		"OPENCODE_DISABLE_MODELS_FETCH": "1",
	}
	with := func(base map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for bk, bv := range base {
			out[bk] = bv
		}
		return out
	}

	tests := []struct {
		name  string
		agent string
		ctx   Context
		want  Launch
	}{
		{name: "shell adds nothing", agent: "shell", ctx: Context{Providers: []Provider{llm}}},
		{
			name: "gemini adds nothing", agent: "gemini",
			ctx: Context{Env: map[string]string{"OPENAI_BASE_URL": "x"}},
		},
		{
			name: "claude quiet", agent: "claude",
			want: Launch{Env: map[string]string{
				"DISABLE_AUTOUPDATER":                      "1",
				"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
			}},
		},
		{
			name: "codex without a base URL", agent: "codex",
			ctx: Context{Env: map[string]string{"OPENAI_API_KEY": key}},
		},
		{
			name: "codex follows OPENAI_BASE_URL", agent: "codex",
			ctx:  Context{Env: map[string]string{"OPENAI_BASE_URL": "https://llm.example.com:8443/v1"}},
			want: Launch{Args: []string{"-c", `openai_base_url="https://llm.example.com:8443/v1"`}},
		},
		{name: "opencode without providers", agent: "opencode", want: Launch{Env: opencodeBase}},
		{
			name: "opencode with a provider and its model", agent: "opencode",
			ctx: Context{Args: []string{"run", "-m", "my-llm/qwen3-coder", "say hi"}, Providers: []Provider{llm}},
			want: Launch{Env: with(opencodeBase, "OPENCODE_CONFIG_CONTENT",
				`{"provider":{"my-llm":{"npm":"@ai-sdk/openai-compatible","name":"my-llm",`+
					`"options":{"baseURL":"https://llm.example.com/v1","apiKey":"cordon-placeholder-key"},`+
					`"models":{"qwen3-coder":{}}}}}`)},
		},
		{
			name:  "opencode: no key without a secret, models of other providers left out",
			agent: "opencode",
			ctx: Context{
				Args:      []string{"--model=local/org/model-7b", "-m", "openai/gpt-5"},
				Providers: []Provider{keyless},
			},
			want: Launch{Env: with(opencodeBase, "OPENCODE_CONFIG_CONTENT",
				`{"provider":{"local":{"npm":"@ai-sdk/openai-compatible","name":"local",`+
					`"options":{"baseURL":"http://10.0.0.5:8000/v1"},"models":{"org/model-7b":{}}}}}`)},
		},
		{
			name: "opencode with an Anthropic-style provider", agent: "opencode",
			ctx: Context{Providers: []Provider{anth}},
			want: Launch{Env: with(opencodeBase, "OPENCODE_CONFIG_CONTENT",
				`{"provider":{"gateway":{"npm":"@ai-sdk/anthropic","name":"gateway",`+
					`"options":{"baseURL":"https://gw.example.com/anthropic/v1","apiKey":"cordon-placeholder-key"}}}}`)},
		},
		{
			name: "opencode ignores a provider with no API style", agent: "opencode",
			ctx:  Context{Providers: []Provider{{Name: "plain", BaseURL: "https://plain.example.com"}}},
			want: Launch{Env: opencodeBase},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Lookup(tt.agent)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, p.Launch(tt.ctx)); diff != "" {
				t.Errorf("Launch (-want +got):\n%s", diff)
			}
		})
	}
}

// The configuration handed to opencode is JSON that names every provider,
// and a key in it is only ever the placeholder the context carries.
func TestOpencodeConfigIsJSON(t *testing.T) {
	ctx := Context{
		Args: []string{"run", "-m", `a"b/c\d`},
		Providers: []Provider{
			{Name: `a"b`, BaseURL: "https://x.example.com/v1?<&>", API: "openai", Key: "cordon-placeholder-key"},
			{Name: "second", BaseURL: "https://y.example.com", API: "anthropic"},
		},
	}
	var cfg struct {
		Provider map[string]struct {
			Options map[string]string
			Models  map[string]any
		}
	}
	if err := json.Unmarshal([]byte(opencodeConfig(ctx)), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Provider) != 2 {
		t.Fatalf("providers = %v", cfg.Provider)
	}
	first := cfg.Provider[`a"b`]
	if first.Options["baseURL"] != "https://x.example.com/v1?<&>" || first.Options["apiKey"] != "cordon-placeholder-key" {
		t.Errorf("options = %v", first.Options)
	}
	if _, ok := first.Models[`c\d`]; !ok {
		t.Errorf("models = %v", first.Models)
	}
	if _, ok := cfg.Provider["second"].Options["apiKey"]; ok {
		t.Errorf("a provider without a secret got a key: %v", cfg.Provider["second"].Options)
	}
}

func TestModelArgs(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{nil, nil},
		{[]string{"run", "say hi"}, nil},
		{[]string{"run", "-m", "p/m", "say hi"}, []string{"p/m"}},
		{[]string{"--model", "p/m"}, []string{"p/m"}},
		{[]string{"-m=p/m", "--model=q/n"}, []string{"p/m", "q/n"}},
		{[]string{"-m"}, nil},
		{[]string{"-m", "-m"}, []string{"-m"}},
		{[]string{"run", "--", "-m", "p/m"}, nil},
		{[]string{"--models", "p/m", "-mx"}, nil},
	}
	for _, tt := range tests {
		if got := modelArgs(tt.args); !slices.Equal(got, tt.want) {
			t.Errorf("modelArgs(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}

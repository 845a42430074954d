package cli

import (
	"bytes"
	"strings"
	"testing"
)

// TestBadInputEverywhere feeds every command malformed, empty, huge and
// control-character values: each must exit 2 with one line saying what is
// wrong (and at most a hint), write nothing to stdout, and change nothing
// in the state directory.
func TestBadInputEverywhere(t *testing.T) {
	home := t.TempDir()
	t.Setenv("CORDON_HOME", home)
	t.Setenv("HOME", t.TempDir())
	setup := [][]string{
		{"provider", "add", "--name", "llm", "--base-url", "https://llm.example.com/v1"},
		{"policy", "allow", "network", "ok.example.com"},
		{"ca", "path"},
	}
	for _, args := range setup {
		var out bytes.Buffer
		if code := Main(args, strings.NewReader(""), &out, &out); code != 0 {
			t.Fatalf("setup %q: %d %s", args, code, out.String())
		}
	}
	var secretOut bytes.Buffer
	if code := Main([]string{"secret", "set", "llm"}, strings.NewReader("sk-setup-0123456789abcdef"), &secretOut, &secretOut); code != 0 {
		t.Fatalf("setup secret: %s", secretOut.String())
	}

	huge := strings.Repeat("a", 1<<16)
	control := "x\x1b[31m\ny\x00"
	values := map[string]string{"empty": "", "huge": huge, "control": control, "space": " "}

	type badCase struct {
		args  []string
		stdin string
	}
	var cases []badCase
	add := func(stdin string, args ...string) { cases = append(cases, badCase{args, stdin}) }
	for _, v := range values {
		add("", "provider", "add", "--name", v, "--base-url", "https://a.example.com")
		add("", "provider", "add", "--name", "a", "--base-url", v)
		add("", "provider", "add", "--name", "a", "--base-url", "https://a.example.com", "--header", v+":")
		add("", "provider", "add", "--name", "a", "--base-url", "https://a.example.com", "--query-param", v)
		add("", "provider", "add", "--name", "a", "--base-url", "https://a.example.com", "--api", v)
		add("", "provider", "add", "--name", "a", "--base-url", "https://a.example.com", "--env", v)
		add("", "provider", "add", "--name", "a", "--base-url", "https://a.example.com", "--resolve", v)
		add("", "provider", "add", "--name", "a", "--base-url", "https://a.example.com", "--ca-cert", v+"/missing")
		add("", "provider", "show", v)
		add("", "provider", "rm", v)
		add("sk-0123456789abcdef", "secret", "set", v)
		add("sk-0123456789abcdef", "secret", "set", "--sandbox", v, "llm")
		add("sk-0123456789abcdef", "secret", "set", "--host", v, "--header", "x:")
		add("", "secret", "rm", v)
		add("", "secret", "rm", "--sandbox", v, "llm")
		add("", "policy", "init", v)
		add("", "policy", "allow", "network", v)
		add("", "policy", "deny", "network", v)
		add("", "policy", "bypass", v)
		add("", "policy", "allow", "network", "x.example.com", "--sandbox", v)
		add("", "policy", "allow", "network", "x.example.com", "--method", v)
		add("", "policy", "check", "--method", v, "https://x.example.com/")
		add("", "policy", "allow", "network", "x.example.com", "--path", v+"\x00")
		add("", "policy", "rm", "--id", v)
		add("", "policy", "ls", "--sandbox", v)
		add("", "policy", "check", v)
		add("", "policy", "log", "--since", v)
		add("", "policy", "log", "--limit", v)
		add("", "policy", "log", "--sandbox", v)
		add("", "run", v)
		add("", "run", "--name", v, "shell")
		add("", "run", "shell", v+"/missing")
		add("", "run", "-e", v, "shell")
		add("", "run", "--allow-host", v, "shell")
		add("", "exec", v, "--", "true")
		add("", "stop", v)
		add("", "rm", v)
		add("", "proxy", "--listen", v)
		add("", "proxy", "--sandbox", v)
		add("", "proxy", "--log-level", v)
	}
	// Names that start with a dash, given where a name is expected.
	add("", "provider", "add", "--name=-x", "--base-url", "https://a.example.com")
	add("", "run", "--name=-x", "shell")
	add("", "secret", "rm", "--sandbox=-x", "llm")
	add("", "proxy", "--sandbox=-x")
	// Secret values that must never be stored.
	for _, v := range []string{"", "\n", "a\nb", "a\rb", "a\x00b", huge} {
		add(v, "secret", "set", "--force", "llm")
	}

	before := dirDigest(t, home)
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		code := Main(c.args, strings.NewReader(c.stdin), &stdout, &stderr)
		name := strings.Join(c.args, " ")
		if len(name) > 120 {
			name = name[:120] + "..."
		}
		if code != exitUsage {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", name, code, trim(stderr.String()))
			continue
		}
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		if !strings.HasPrefix(lines[0], "cordon: ") || len(lines) > 2 || len(lines) == 2 && !strings.HasPrefix(lines[1], "hint: ") {
			t.Errorf("%q: stderr is not one line and a hint: %q", name, trim(stderr.String()))
		}
		if strings.ContainsAny(stderr.String(), "\x1b\x00\r") {
			t.Errorf("%q: control characters on stderr", name)
		}
		if len(stderr.String()) > 2048 {
			t.Errorf("%q: a %d-byte error", name, len(stderr.String()))
		}
		if stdout.Len() > 0 {
			t.Errorf("%q: wrote to stdout: %q", name, trim(stdout.String()))
		}
		if strings.Contains(stderr.String(), "sk-setup") {
			t.Errorf("%q: the secret appears in the error", name)
		}
	}
	if after := dirDigest(t, home); after != before {
		t.Errorf("bad input changed the state directory:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func trim(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

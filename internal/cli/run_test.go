package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cordon-dev/cordon/internal/names"
)

func TestDefaultName(t *testing.T) {
	tests := []struct {
		agent, dir, want string
	}{
		{"shell", "/home/u/src/project", "shell-project"},
		{"opencode", "/home/u/My Project!", "opencode-my-project"},
		{"shell", "/srv/.hidden", "shell-hidden"},
		{"shell", "/x/" + strings.Repeat("long", 30), "shell-" + strings.Repeat("long", 30)[:names.MaxLen-len("shell-")]},
		{"claude", "/x/Ünïcode", "claude-n-code"},
	}
	for _, tt := range tests {
		got := defaultName(tt.agent, tt.dir)
		if got != tt.want {
			t.Errorf("defaultName(%q, %q) = %q, want %q", tt.agent, tt.dir, got, tt.want)
		}
		if err := names.Check("sandbox", got); err != nil {
			t.Errorf("defaultName(%q, %q) = %q: %v", tt.agent, tt.dir, got, err)
		}
	}
}

func TestParseWorkspaces(t *testing.T) {
	dir := t.TempDir()
	ws := filepath.Join(dir, "ws")
	os.Mkdir(ws, 0o755)
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)

	got, err := parseWorkspaces([]string{ws, ws + ":ro", filepath.Join(dir, "ws") + "/"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Source != ws || got[0].Target != ws || got[0].ReadOnly {
		t.Errorf("parseWorkspaces = %+v", got)
	}
	got, err = parseWorkspaces([]string{ws + ":ro"})
	if err != nil || !got[0].ReadOnly {
		t.Errorf(":ro gave %+v, %v", got, err)
	}
	for _, bad := range []string{file, filepath.Join(dir, "missing"), ":ro", "/"} {
		if _, err := parseWorkspaces([]string{bad}); err == nil {
			t.Errorf("parseWorkspaces(%q) accepted it", bad)
		}
	}
	wd, _ := os.Getwd()
	got, err = parseWorkspaces(nil)
	if err != nil || len(got) != 1 {
		t.Fatalf("no arguments: %+v, %v", got, err)
	}
	if real, _ := filepath.EvalSymlinks(wd); got[0].Source != real {
		t.Errorf("default workspace %s, want %s", got[0].Source, real)
	}
}

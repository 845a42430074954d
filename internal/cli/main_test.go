package cli

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Errors are one line on stderr even when the input that caused them holds
// line breaks or terminal control characters.
func TestErrorsStayOnOneLine(t *testing.T) {
	t.Setenv("CORDON_HOME", t.TempDir())
	tests := [][]string{
		{"provider", "add", "--name", "x\ny", "--base-url", "https://x.example.com"},
		{"provider", "add", "--name", "x", "--base-url", "https://x.example.com/\r\nInjected: 1"},
		{"provider", "show", "evil\x1b[2J\nname"},
		{"secret", "rm", "--sandbox", "a\nb", "openai"},
		{"no\nsuch", "command"},
	}
	for _, args := range tests {
		var stdout, stderr bytes.Buffer
		code := Main(args, strings.NewReader(""), &stdout, &stderr)
		if code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
		lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
		if len(lines) < 1 || !strings.HasPrefix(lines[0], "cordon: ") {
			t.Errorf("%q: stderr %q", args, stderr.String())
		}
		for _, l := range lines[1:] {
			if !strings.HasPrefix(l, "hint: ") {
				t.Errorf("%q: stray stderr line %q", args, l)
			}
		}
		if strings.ContainsAny(stderr.String(), "\r\x1b") {
			t.Errorf("%q: control characters on stderr: %q", args, stderr.String())
		}
		if stdout.Len() > 0 {
			t.Errorf("%q: wrote %q to stdout", args, stdout.String())
		}
	}
}

// dirDigest lists every file under root with its mode and a hash of its
// content, ignoring lock files.
func dirDigest(t *testing.T, root string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || strings.HasSuffix(path, ".lock") {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		fmt.Fprintf(&b, "%s %v", rel, info.Mode())
		if d.Type().IsRegular() {
			data, _ := os.ReadFile(path)
			fmt.Fprintf(&b, " %x", sha256.Sum256(data))
		}
		b.WriteByte('\n')
		return nil
	})
	return b.String()
}

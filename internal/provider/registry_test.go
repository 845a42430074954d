package provider

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRegistryAddRemove(t *testing.T) {
	dir := t.TempDir()
	reg := OpenRegistry(dir)

	set, err := reg.Set()
	if err != nil {
		t.Fatal(err)
	}
	if set.Lookup("openai") == nil || set.Lookup("my-llm") != nil {
		t.Fatal("a fresh registry should hold the built-ins only")
	}

	spec := Spec{Name: "my-llm", BaseURL: "https://llm.example.com/v1", API: "openai", Env: []string{"MY_LLM_KEY"}}
	p, err := reg.Add(spec, false)
	if err != nil {
		t.Fatal(err)
	}
	if p.BaseURL() != "https://llm.example.com/v1" || p.Auth != Bearer || p.API != APIOpenAI {
		t.Errorf("Add returned %+v", p)
	}

	if _, err := reg.Add(spec, false); !errors.Is(err, ErrExists) {
		t.Errorf("second Add without force: %v, want ErrExists", err)
	}
	spec.Header = "x-api-key:"
	if _, err := reg.Add(spec, true); err != nil {
		t.Errorf("Add with force: %v", err)
	}
	if _, err := reg.Add(Spec{Name: "other", BaseURL: "https://LLM.example.com/v1/"}, false); !errors.Is(err, ErrConflict) {
		t.Errorf("Add of the same endpoint under another name: %v, want ErrConflict", err)
	}
	if _, err := reg.Add(Spec{Name: "openai", BaseURL: "https://x.example"}, true); !errors.Is(err, ErrBuiltin) {
		t.Errorf("Add shadowing a built-in: %v, want ErrBuiltin", err)
	}

	set, err = reg.Set()
	if err != nil {
		t.Fatal(err)
	}
	if got := set.Lookup("my-llm"); got == nil || got.Auth.Header != "X-Api-Key" {
		t.Errorf("after the forced Add, Lookup = %+v", got)
	}

	if err := reg.Remove("my-llm"); err != nil {
		t.Fatal(err)
	}
	if err := reg.Remove("my-llm"); !errors.Is(err, ErrUnknown) {
		t.Errorf("second Remove: %v, want ErrUnknown", err)
	}
	if err := reg.Remove("openai"); !errors.Is(err, ErrBuiltin) {
		t.Errorf("Remove of a built-in: %v, want ErrBuiltin", err)
	}
	if set, _ := reg.Set(); set.Lookup("my-llm") != nil {
		t.Error("removed provider still listed")
	}
}

// A second Registry stands for another process: it must see changes made
// through the first without being reopened.
func TestRegistrySeesOtherWriters(t *testing.T) {
	dir := t.TempDir()
	reader, writer := OpenRegistry(dir), OpenRegistry(dir)
	if _, err := reader.Set(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		name := fmt.Sprintf("p%d", i)
		if _, err := writer.Add(Spec{Name: name, BaseURL: "https://" + name + ".example"}, false); err != nil {
			t.Fatal(err)
		}
		set, err := reader.Set()
		if err != nil {
			t.Fatal(err)
		}
		if set.Lookup(name) == nil {
			t.Fatalf("reader does not see %s", name)
		}
	}
}

func TestRegistryRejectsBadFiles(t *testing.T) {
	tests := []struct {
		name, content, wantErr string
	}{
		{"not JSON", "{", "providers.json"},
		{"truncated", `{"version": 1, "providers": [{"name": "a"`, "providers.json"},
		{"no version", `{"providers": []}`, "version"},
		{"future version", `{"version": 2, "providers": []}`, "version 2"},
		{"unknown field", `{"version": 1, "providers": [], "extra": true}`, "extra"},
		{"unknown provider field", `{"version": 1, "providers": [{"name": "a", "base_url": "https://a.example", "hedaer": "x:"}]}`, "hedaer"},
		{"bad base URL", `{"version": 1, "providers": [{"name": "a", "base_url": "ftp://a"}]}`, "scheme"},
		{"trailing data", `{"version": 1, "providers": []} {}`, "after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			reg := OpenRegistry(dir)
			if _, err := reg.Set(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Set: %v, want an error mentioning %q", err, tt.wantErr)
			}
			// A write must fail too, and leave the file as it was.
			if _, err := reg.Add(Spec{Name: "new", BaseURL: "https://new.example"}, false); err == nil {
				t.Error("Add on a broken file succeeded")
			}
			if got, _ := os.ReadFile(path); string(got) != tt.content {
				t.Errorf("file changed to %q", got)
			}
		})
	}
}

func TestRegistryCACert(t *testing.T) {
	dir := t.TempDir()
	reg := OpenRegistry(dir)

	pemFile := filepath.Join(t.TempDir(), "corp-ca.pem")
	if err := os.WriteFile(pemFile, testCAPEM(t), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := reg.Add(Spec{Name: "corp", BaseURL: "https://gw.corp.example", CACert: pemFile}, false)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(p.CACert) != filepath.Join(dir, "provider-ca") {
		t.Errorf("CA not copied into the registry: %s", p.CACert)
	}
	// The provider keeps working when the original file goes away.
	os.Remove(pemFile)
	if _, err := LoadCACert(p.CACert); err != nil {
		t.Fatal(err)
	}
	set, err := reg.Set()
	if err != nil {
		t.Fatal(err)
	}
	if set.Lookup("corp").CACert != p.CACert {
		t.Errorf("CACert = %q", set.Lookup("corp").CACert)
	}
	if err := reg.Remove("corp"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.CACert); !os.IsNotExist(err) {
		t.Errorf("CA copy left behind: %v", err)
	}

	for name, content := range map[string]string{
		"empty":   "",
		"not PEM": "hello",
		"a key":   "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
	} {
		bad := filepath.Join(t.TempDir(), "bad.pem")
		os.WriteFile(bad, []byte(content), 0o644)
		if _, err := reg.Add(Spec{Name: "bad", BaseURL: "https://b.example", CACert: bad}, false); err == nil {
			t.Errorf("%s CA file accepted", name)
		}
	}
	if _, err := reg.Add(Spec{Name: "bad", BaseURL: "https://b.example", CACert: "/nonexistent"}, false); err == nil {
		t.Error("missing CA file accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "provider-ca", "bad.pem")); !os.IsNotExist(err) {
		t.Error("a rejected CA file was copied")
	}
}

func testCAPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestRegistryConcurrentProcesses runs several processes that each add
// providers at once; every one must be there at the end.
func TestRegistryConcurrentProcesses(t *testing.T) {
	if dir := os.Getenv("CORDON_TEST_REGISTRY_DIR"); dir != "" {
		reg := OpenRegistry(dir)
		worker := os.Getenv("CORDON_TEST_REGISTRY_WORKER")
		for i := range 10 {
			name := fmt.Sprintf("w%s-p%d", worker, i)
			if _, err := reg.Add(Spec{Name: name, BaseURL: "https://" + name + ".example"}, false); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		os.Exit(0)
	}

	dir := t.TempDir()
	const workers = 6
	var cmds []*exec.Cmd
	var outputs []*bytes.Buffer
	for w := range workers {
		cmd := exec.Command(os.Args[0], "-test.run=^TestRegistryConcurrentProcesses$")
		cmd.Env = append(os.Environ(), "CORDON_TEST_REGISTRY_DIR="+dir, fmt.Sprintf("CORDON_TEST_REGISTRY_WORKER=%d", w))
		out := &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outputs = append(cmds, cmd), append(outputs, out)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("worker %d: %v\n%s", i, err, outputs[i])
		}
	}
	set, err := OpenRegistry(dir).Set()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(set.All()), len(Builtins())+workers*10; got != want {
		t.Errorf("%d providers after concurrent adds, want %d", got, want)
	}
}

func FuzzRegistryFile(f *testing.F) {
	f.Add([]byte(`{"version": 1, "providers": [{"name": "a", "base_url": "https://a.example/v1", "header": "x-api-key:"}]}`))
	f.Add([]byte(`{"version": 1, "providers": []}`))
	f.Add([]byte(`{"version": 1, "providers": [{"name": "q", "base_url": "http://10.0.0.1:8000", "query_param": "key", "env": ["K"]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		specs, err := decode("providers.json", data)
		if err != nil {
			return
		}
		set, err := newSet(specs)
		if err != nil {
			return
		}
		for _, p := range set.All() {
			if len(p.Endpoints) == 0 || p.Name == "" {
				t.Fatalf("provider %+v from %q", p, data)
			}
		}
	})
}

func TestAnthropicStyleDefaultsToAPIKeyHeader(t *testing.T) {
	p, err := Spec{Name: "claude-gw", BaseURL: "https://gw.example.com", API: "anthropic"}.Build()
	if err != nil {
		t.Fatal(err)
	}
	if p.Auth != (Auth{Kind: AuthHeader, Header: "X-Api-Key"}) {
		t.Errorf("auth = %v, want X-Api-Key", p.Auth)
	}
	p, err = Spec{Name: "claude-gw", BaseURL: "https://gw.example.com", API: "anthropic", Header: "Authorization: Bearer"}.Build()
	if err != nil || p.Auth != Bearer {
		t.Errorf("an explicit header was overridden: %v, %v", p.Auth, err)
	}
}

package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cordon-dev/cordon/internal/audit"
	"github.com/cordon-dev/cordon/internal/demo"
	"github.com/cordon-dev/cordon/internal/provider"
	"github.com/cordon-dev/cordon/internal/sandbox"
	"github.com/cordon-dev/cordon/internal/secret"
	"github.com/cordon-dev/cordon/internal/state"
)

func newDemoCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "See cordon work end to end, offline, in a few seconds",
		Long: `Run cordon's main job end to end on this machine, with no network and
nothing of yours touched: start a local OpenAI-compatible model server with
a private CA of its own, register it as a provider, store a key for it, and
stream a chat completion from a client in a sandbox. The demo shows what the
server received (the real key) and what the sandbox saw (a placeholder), and
exits 0 only if both held. Everything it creates is in a temporary
directory that is removed at the end.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.demo()
		},
	}
}

// demoSteps prints numbered steps.
type demoSteps struct {
	w     io.Writer
	n, of int
}

func (s *demoSteps) step(format string, args ...any) {
	s.n++
	fmt.Fprintf(s.w, "[%d/%d] %s\n", s.n, s.of, fmt.Sprintf(format, args...))
}

func (s *demoSteps) detail(format string, args ...any) {
	fmt.Fprintf(s.w, "      %s\n", fmt.Sprintf(format, args...))
}

func (e *env) demo() error {
	out := &demoSteps{w: e.stdout, of: 6}
	fmt.Fprintln(e.stdout, "cordon demo: a sandboxed client calls a private model server; the key stays on the host")

	tmp, err := os.MkdirTemp("", "cordon-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	home := filepath.Join(tmp, "home")
	workspace := filepath.Join(tmp, "workspace")
	dirs := state.Dirs{Config: home, Data: home, State: home, Runtime: filepath.Join(home, "run")}
	if err := dirs.Ensure(); err != nil {
		return err
	}
	if err := os.Mkdir(workspace, 0o755); err != nil {
		return err
	}
	out.step("state in %s (removed at the end)", tmp)

	// The model server, with a CA of its own that only the provider trusts.
	const host = "models.demo.internal"
	server, err := demo.StartServer(host)
	if err != nil {
		return fmt.Errorf("starting the model server: %w", err)
	}
	defer server.Close()
	_, port, _ := net.SplitHostPort(server.Addr)
	baseURL := fmt.Sprintf("https://%s:%s/v1", host, port)
	caFile := filepath.Join(tmp, "model-server-ca.pem")
	if err := os.WriteFile(caFile, server.CAPEM, 0o644); err != nil {
		return err
	}
	out.step("model server at %s, listening on %s with a private CA", baseURL, server.Addr)

	reg := provider.OpenRegistry(dirs.Config)
	p, err := reg.Add(provider.Spec{Name: "demo-llm", BaseURL: baseURL, CACert: caFile, Address: "127.0.0.1", API: "openai"}, false)
	if err != nil {
		return err
	}
	out.step("registered provider %s for %s (%s)", p.Name, p.BaseURL(), p.Auth)

	key, err := demoKey()
	if err != nil {
		return err
	}
	store, err := secret.OpenFile(dirs.Data)
	if err != nil {
		return err
	}
	err = store.Set(secret.Global(), p.Name, key, false)
	store.Close()
	if err != nil {
		return err
	}
	out.step("stored a key for %s on the host, encrypted: %s", p.Name, secret.Mask(key))

	// The client is cordon itself, copied into the workspace so that the
	// sandbox can run it whatever is installed on this machine.
	client := filepath.Join(workspace, "cordon-demo-client")
	if err := copyExecutable(client); err != nil {
		return err
	}
	envFile := filepath.Join(workspace, "sandbox-environment.txt")
	out.step("running the client in a sandbox; it streams a chat completion:")

	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devNull.Close()
	inner := &env{stdin: devNull, stdout: pw, stderr: pw, getenv: e.getenv, dirs: dirs, loaded: true}
	printed := make(chan string)
	go func() {
		var all strings.Builder
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			fmt.Fprintf(e.stdout, "      │ %s\n", sc.Text())
		}
		printed <- all.String()
	}()
	code, runErr := inner.runIn(runOptions{}, "demo", "shell",
		[]sandbox.Mount{{Source: workspace, Target: workspace}},
		sandbox.Command{Path: client, Args: []string{"cordon", demo.ClientArg, envFile}}, nil, nil)
	pw.Close()
	clientOutput := <-printed
	pr.Close()
	if runErr != nil {
		var setup *sandbox.SetupError
		if errors.As(runErr, &setup) {
			return withHint(runErr, setup.Fix)
		}
		return runErr
	}

	out.step("checks")
	failed := 0
	check := func(ok bool, pass, fail string) {
		if ok {
			out.detail("ok    %s", pass)
		} else {
			out.detail("FAIL  %s", fail)
			failed++
		}
	}
	check(code == 0, "the client exited 0", fmt.Sprintf("the client exited %d", code))
	check(strings.Contains(clientOutput, demo.Reply), "the reply streamed back through the proxy",
		"the reply did not arrive")

	gotKey := false
	for _, r := range server.Requests() {
		if r.Path == "/v1/chat/completions" && r.Authorization == "Bearer "+key {
			gotKey = true
		}
	}
	check(gotKey, "the server received Authorization: Bearer "+secret.Mask(key)+", the real key",
		"the server did not receive the stored key")

	seen, err := os.ReadFile(envFile)
	sawPlaceholder := err == nil && strings.Contains(string(seen), "OPENAI_API_KEY="+Placeholder+"\n")
	check(sawPlaceholder && !strings.Contains(string(seen), key) && !strings.Contains(clientOutput, key),
		"the sandbox saw only the placeholder "+Placeholder+"; the key is nowhere in its environment",
		"the sandbox's environment is not what it should be")

	logged := false
	reader, err := audit.OpenReader(audit.DefaultPath(dirs.State))
	if err == nil {
		events, _ := reader.Query(context.Background(), audit.Filter{Sandbox: "demo"})
		reader.Close()
		for _, ev := range events {
			if ev.Injected == p.Name && ev.Path == "/v1/chat/completions" && ev.Status == 200 {
				logged = true
			}
		}
	}
	check(logged, "the request log shows the request and the injected credential",
		"the request is missing from the log")

	if failed > 0 {
		return fmt.Errorf("demo failed: %d check(s) did not hold", failed)
	}
	fmt.Fprintln(e.stdout, "demo passed: the agent used the provider, and the key never entered the sandbox")
	return nil
}

// demoKey makes a key that looks like a real one and is used nowhere else.
func demoKey() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "sk-demo-" + hex.EncodeToString(b), nil
}

// copyExecutable copies the running cordon binary to path.
func copyExecutable(path string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	src, err := os.Open(self)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

package main

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	goproxypeer "github.com/cordon-dev/cordon/bench/goproxy-peer"
)

// The subjects, in the order of the table.
const (
	direct    = "direct"
	cordon    = "cordon"
	baseline  = "baseline" // another cordon binary, with --baseline
	goproxy   = "goproxy"
	mitmproxy = "mitmproxy"
)

// subject is one way of reaching the upstream: straight, or through one of
// the proxies, each running as a process of its own.
type subject struct {
	name string
	// absent says why the subject is not measured; "" when it is.
	absent  string
	version string

	// proxy is the proxy URL, with the user and password cordon wants;
	// nil for direct.
	proxy *url.URL
	// caPEM is what the client trusts: the upstream's CA for direct, the
	// proxy's CA otherwise.
	caPEM []byte

	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has exited
	stderr *lockedWriter // what the process wrote to stderr, kept for the report
}

// stderrText returns what the process has written to stderr so far.
func (s *subject) stderrText() string {
	if s.stderr == nil {
		return ""
	}
	s.stderr.mu.Lock()
	defer s.stderr.mu.Unlock()
	return s.stderr.w.String()
}

func (s *subject) pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// exited reports whether the subject's process has ended.
func (s *subject) exited() bool {
	if s.done == nil {
		return false
	}
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// stop ends the subject's process: SIGTERM, then SIGKILL after grace.
func (s *subject) stop(grace time.Duration) {
	if s.cmd == nil || s.cmd.Process == nil || s.exited() {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(grace):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// startProcess starts cmd in the background, ended with the benchmark if
// the benchmark dies first, and returns its stdout.
func startProcess(s *subject, cmd *exec.Cmd) (io.Reader, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// A child of the subject that outlives it could hold its output open
	// and keep Wait from returning.
	cmd.WaitDelay = 2 * time.Second
	s.stderr = &lockedWriter{w: new(bytes.Buffer)}
	cmd.Stderr = s.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	go func() {
		cmd.Wait()
		close(s.done)
	}()
	return stdout, nil
}

// readLines reads stdout until want returns true for a line, the process
// ends, or the timeout passes. The rest of stdout is drained in the
// background so that the process never blocks on it.
func readLines(s *subject, stdout io.Reader, timeout time.Duration, want func(string) bool) error {
	found := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		matched := false
		for sc.Scan() {
			if !matched && want(sc.Text()) {
				matched = true
				found <- nil
			}
		}
		if !matched {
			found <- errors.New("it ended before it was ready")
		}
	}()
	select {
	case err := <-found:
		return err
	case <-time.After(timeout):
		return fmt.Errorf("not ready after %v", timeout)
	}
}

// startCordon sets up a throwaway cordon state directory, registers the
// upstream as a provider (and every first-contact host as one more, each
// pinned to 127.0.0.1 with --resolve, since those names exist nowhere
// else), stores the secret, and starts "cordon proxy" on a free port.
func startCordon(ctx context.Context, cfg *config, dir string, up *upstream,
	hosts []string, name, path string) (*subject, error) {
	s := &subject{name: name}
	home := filepath.Join(dir, name+"-home")
	env := append(os.Environ(), "CORDON_HOME="+home)
	cli := func(stdin string, args ...string) error {
		cmd := exec.CommandContext(ctx, path, args...)
		cmd.Env = env
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("cordon %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		return nil
	}

	if out, err := exec.CommandContext(ctx, path, "version").Output(); err == nil {
		s.version = strings.TrimSpace(string(out))
	}
	all := append([]string{apiHost}, hosts...)
	for i, host := range all {
		name := fmt.Sprintf("bench-%d", i)
		if err := cli("", "provider", "add", "--name", name,
			"--base-url", "https://"+net.JoinHostPort(host, strconv.Itoa(up.port)),
			"--ca-cert", up.caPath, "--resolve", "127.0.0.1"); err != nil {
			return nil, err
		}
		if err := cli(up.secret+"\n", "secret", "set", name); err != nil {
			return nil, err
		}
	}

	args := append([]string{"proxy", "--listen", "127.0.0.1:0", "--log-level", "info", "--grace", "2s"},
		cfg.proxyArgs...)
	cmd := exec.Command(path, args...)
	cmd.Env = env
	stdout, err := startProcess(s, cmd)
	if err != nil {
		return nil, err
	}
	// The proxy prints shell lines; the last one names cordon's CA.
	var proxyURL, caPath string
	err = readLines(s, stdout, 20*time.Second, func(line string) bool {
		name, value, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok {
			return false
		}
		value = strings.Trim(value, "'")
		switch name {
		case "HTTPS_PROXY":
			proxyURL = value
		case "NODE_EXTRA_CA_CERTS":
			caPath = value
		}
		return proxyURL != "" && caPath != ""
	})
	if err != nil {
		s.stop(time.Second)
		return nil, fmt.Errorf("cordon proxy: %v: %s", err, strings.TrimSpace(s.stderrText()))
	}
	if s.proxy, err = url.Parse(proxyURL); err != nil {
		s.stop(time.Second)
		return nil, fmt.Errorf("cordon proxy printed a bad URL: %w", err)
	}
	if s.caPEM, err = os.ReadFile(caPath); err != nil {
		s.stop(time.Second)
		return nil, err
	}
	return s, nil
}

// startGoproxyPeer starts this program again as the goproxy peer.
func startGoproxyPeer(dir string, up *upstream) (*subject, error) {
	s := &subject{name: goproxy, version: "github.com/elazarl/goproxy " + goproxyVersion()}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	peerDir := filepath.Join(dir, "goproxy-peer")
	if err := os.Mkdir(peerDir, 0o700); err != nil {
		return nil, err
	}
	cmd := exec.Command(self, peerCommand, "--listen", "127.0.0.1:0", "--upstream", up.addr,
		"--upstream-ca", up.caPath, "--inject-suffix", benchDomain, "--dir", peerDir)
	cmd.Env = append(os.Environ(), goproxypeer.SecretEnv+"="+up.secret)
	stdout, err := startProcess(s, cmd)
	if err != nil {
		return nil, err
	}
	var addr string
	err = readLines(s, stdout, 10*time.Second, func(line string) bool {
		addr, _ = strings.CutPrefix(line, "listening ")
		return addr != line
	})
	if err != nil {
		s.stop(time.Second)
		return nil, fmt.Errorf("goproxy peer: %v: %s", err, strings.TrimSpace(s.stderrText()))
	}
	s.proxy = &url.URL{Scheme: "http", Host: addr}
	if s.caPEM, err = os.ReadFile(filepath.Join(peerDir, "ca.pem")); err != nil {
		s.stop(time.Second)
		return nil, err
	}
	return s, nil
}

//go:embed mitmproxy_addon.py
var mitmproxyAddon []byte

// startMitmproxy starts Debian's mitmdump with streaming on, the
// upstream's CA trusted, and the addon that injects the credential. It
// returns a subject marked absent when mitmdump is not installed.
func startMitmproxy(cfg *config, dir string, up *upstream) (*subject, error) {
	s := &subject{name: mitmproxy}
	path, err := exec.LookPath(cfg.mitmdump)
	if err != nil {
		s.absent = "absent: " + cfg.mitmdump + " not found (apt-get install mitmproxy)"
		return s, nil
	}
	if out, err := exec.Command(path, "--version").Output(); err == nil {
		first, _, _ := strings.Cut(string(out), "\n")
		s.version = strings.TrimSpace(first)
	}

	confDir := filepath.Join(dir, "mitmproxy")
	if err := os.Mkdir(confDir, 0o700); err != nil {
		return nil, err
	}
	addon := filepath.Join(dir, "mitmproxy_addon.py")
	if err := os.WriteFile(addon, mitmproxyAddon, 0o600); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path,
		"--listen-host", "127.0.0.1", "--listen-port", strconv.Itoa(port),
		"--set", "confdir="+confDir,
		"--set", "stream_large_bodies=1",
		"--set", "ssl_verify_upstream_trusted_ca="+up.caPath,
		"--set", "flow_detail=0",
		"--set", "termlog_verbosity=warn",
		"-s", addon)
	cmd.Env = append(os.Environ(),
		"CORDON_BENCH_UPSTREAM="+up.addr,
		"CORDON_BENCH_SUFFIX="+benchDomain,
		"CORDON_BENCH_SECRET="+up.secret)
	stdout, err := startProcess(s, cmd)
	if err != nil {
		return nil, err
	}
	go io.Copy(io.Discard, stdout)

	// mitmdump says nothing when it is ready: wait for its CA file and
	// for the port to accept.
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	caPath := filepath.Join(confDir, "mitmproxy-ca-cert.pem")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if s.exited() {
			return nil, fmt.Errorf("mitmdump ended: %s", strings.TrimSpace(s.stderrText()))
		}
		if _, err := os.Stat(caPath); err == nil {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				break
			}
		}
		if time.Now().After(deadline) {
			s.stop(time.Second)
			return nil, errors.New("mitmdump did not start listening within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.proxy = &url.URL{Scheme: "http", Host: addr}
	if s.caPEM, err = os.ReadFile(caPath); err != nil {
		s.stop(time.Second)
		return nil, err
	}
	return s, nil
}

// freePort asks the kernel for a free loopback port, for a program that
// cannot listen on port 0 and say which port it got.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lockedWriter serializes writes to a buffer that is read while the
// process may still be writing.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

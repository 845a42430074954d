package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cordon-dev/cordon/internal/audit"
	"github.com/cordon-dev/cordon/internal/names"
	"github.com/cordon-dev/cordon/internal/policy"
	"github.com/cordon-dev/cordon/internal/provider"
	"github.com/cordon-dev/cordon/internal/proxy"
	"github.com/cordon-dev/cordon/internal/state"
)

func newProxyCmd(e *env) *cobra.Command {
	var listen, sandbox, logLevel string
	var grace time.Duration
	var maxConns int
	var cpuProfile string
	cmd := &cobra.Command{
		Use:   "proxy [--listen ADDR] [--sandbox NAME]",
		Short: "Run the credential-injecting proxy on its own, for any client",
		Long: `Run cordon's proxy in the foreground, for a container or any tool that
honours HTTPS_PROXY. Clients authenticate with a token generated at start.

Once the proxy is ready, stdout gets shell lines that point a client at it;
load them in another shell with eval, or save them to a file:

  cordon proxy > cordon.env &
  . ./cordon.env
  curl https://llm.internal.example.com/v1/models

Requests to registered providers get the stored credential; everything is
subject to the network policy ("cordon policy"). Logs go to stderr. SIGINT
or SIGTERM stops the proxy, giving requests in flight --grace to finish.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("sandbox") {
				if err := names.Check("sandbox", sandbox); err != nil {
					return &usageError{err: err}
				}
			}
			level, err := parseLogLevel(logLevel)
			if err != nil {
				return err
			}
			if grace < 0 {
				return usagef("--grace must not be negative")
			}
			if maxConns < 1 {
				return usagef("--max-conns must be at least 1")
			}
			host, _, err := net.SplitHostPort(listen)
			if err != nil {
				return usagef("--listen %q: want HOST:PORT, such as 127.0.0.1:3128", listen)
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			return e.runProxy(cmd.Context(), proxyOptions{
				listen: listen, loopback: isLoopback(host), sandbox: sandbox,
				logLevel: level, grace: grace, maxConns: maxConns,
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:3128", "address to listen on; port 0 picks a free one")
	f.StringVar(&sandbox, "sandbox", "", "serve as this sandbox: its scoped secrets and rules apply")
	f.StringVar(&logLevel, "log-level", "info", "debug (one line per request), info, warn or error")
	f.DurationVar(&grace, "grace", 10*time.Second, "how long requests in flight may finish after SIGINT or SIGTERM")
	f.StringVar(&cpuProfile, "cpu-profile", "", "write a CPU profile of the proxy to this file until it stops")
	f.MarkHidden("cpu-profile")
	f.IntVar(&maxConns, "max-conns", 4096, "most client connections held at once; more are refused with 503")
	return cmd
}

type proxyOptions struct {
	listen   string
	loopback bool
	sandbox  string
	logLevel slog.Level
	grace    time.Duration
	maxConns int
}

func parseLogLevel(s string) (slog.Level, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s)); err != nil {
		return 0, usagef("--log-level %q: use debug, info, warn or error", s)
	}
	return level, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (e *env) runProxy(ctx context.Context, opts proxyOptions) error {
	logger := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: opts.logLevel}))
	dirs, err := e.state()
	if err != nil {
		return err
	}
	authority, err := e.ca()
	if err != nil {
		return err
	}
	store, err := e.secrets()
	if err != nil {
		return err
	}
	defer store.Close()
	reg := provider.OpenRegistry(dirs.Config)
	if _, err := reg.Set(); err != nil {
		return err
	}

	bundlePath, err := writeBundle(dirs, authority.Bundle)
	if err != nil {
		return err
	}

	token, err := randomToken()
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", opts.listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", opts.listen, err)
	}
	defer l.Close()

	engine, err := e.policyEngine(reg)
	if err != nil {
		return err
	}
	// The proxy must not be a way to reach itself.
	self, err := policy.ExpandListenAddr(l.Addr().(*net.TCPAddr).AddrPort())
	if err != nil {
		return err
	}
	engine.SetSelf(self...)

	// A request log that cannot be opened costs the log, not the service.
	var recorder proxy.Recorder
	if requests, err := audit.Open(audit.DefaultPath(dirs.State), audit.Options{Logger: logger}); err != nil {
		e.warnf("requests are served but not logged: %v", err)
	} else {
		recorder = requests
		defer func() {
			requests.Close()
			if n := requests.Dropped(); n > 0 {
				logger.Warn("requests missing from the request log", "dropped", n)
			}
		}()
	}

	p, err := proxy.New(proxy.Config{
		CA:        authority,
		Providers: reg.Set,
		Secrets:   store,
		Policy:    proxyPolicy{engine},
		Audit:     recorder,
		Logger:    logger,
		MaxConns:  opts.maxConns,
	})
	if err != nil {
		return err
	}
	if !opts.loopback {
		e.warnf("listening on %s, beyond this machine; the token is the only protection", l.Addr())
	}

	served := make(chan error, 1)
	go func() { served <- p.Serve(l, proxy.Identity{Sandbox: opts.sandbox, Token: token}) }()

	proxyURL := "http://cordon:" + token + "@" + l.Addr().String()
	for _, name := range []string{"HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"} {
		fmt.Fprintf(e.stdout, "export %s=%s\n", name, shellQuote(proxyURL))
	}
	for _, name := range []string{"NO_PROXY", "no_proxy"} {
		fmt.Fprintf(e.stdout, "export %s=%s\n", name, "localhost,127.0.0.1")
	}
	for _, name := range []string{"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO"} {
		fmt.Fprintf(e.stdout, "export %s=%s\n", name, shellQuote(bundlePath))
	}
	fmt.Fprintf(e.stdout, "export NODE_EXTRA_CA_CERTS=%s\n", shellQuote(authority.CertPath()))
	if f, ok := e.stdout.(*os.File); ok {
		f.Sync()
	}
	logger.Info("proxy ready", "listen", l.Addr().String(), "sandbox", opts.sandbox)

	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case err := <-served:
		return fmt.Errorf("proxy stopped: %w", err)
	case <-ctx.Done():
	}

	logger.Info("shutting down", "grace", opts.grace)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), opts.grace)
	defer cancel()
	if err := p.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// policyEngine opens the policy and checks that it can be read now, so a
// broken policy file stops the proxy at start rather than refusing every
// request later.
func (e *env) policyEngine(reg *provider.Registry) (*policy.Engine, error) {
	dirs, err := e.state()
	if err != nil {
		return nil, err
	}
	engine := policy.NewEngine(policy.OpenStore(dirs.Config), reg)
	if _, err := engine.View(); err != nil {
		return nil, err
	}
	return engine, nil
}

// writeBundle writes the system roots plus cordon's CA for clients that
// take one CA file, and returns its path.
func writeBundle(dirs state.Dirs, bundle func() ([]byte, bool)) (string, error) {
	data, _ := bundle()
	path := filepath.Join(dirs.Data, "ca-bundle.pem")
	if err := state.WriteFile(path, data, 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// randomToken makes the proxy's password: 128 bits from crypto/rand.
func randomToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

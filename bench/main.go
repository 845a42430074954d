// Command cordon-bench measures cordon's proxy side by side with a direct
// connection, a credential-injecting MITM proxy built on goproxy, and
// mitmproxy, in one run on one machine, against an OpenAI-shaped HTTPS
// upstream that it serves itself on loopback. It also times "cordon run"
// starting and ending a shell, next to unshare and bwrap.
//
//	cd bench && go run . --short
//	cd bench && go build -o ../bin/cordon-bench . && ../bin/cordon-bench --json bench.json
//
// Subjects are interleaved round by round, in an order rotated each
// round, so that drift of the machine hits them alike; the table shows
// medians over the rounds and each figure's ratio to direct, next to the
// targets of cordon's design.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	goproxypeer "github.com/cordon-dev/cordon/bench/goproxy-peer"
)

// peerCommand, as the first argument, makes this program the goproxy peer.
const peerCommand = "goproxy-peer"

// config is what one run measures and how long it may take.
type config struct {
	short      bool
	cordonPath string
	// baselinePath is a second cordon binary measured as "baseline".
	baselinePath string
	build        bool
	jsonPath     string
	mitmdump     string
	proxyArgs    []string // more arguments for "cordon proxy"
	only         []string
	verbose      bool

	rounds       int
	workers      int
	duration     time.Duration // of each load measurement
	maxPerWorker int
	newHosts     int // first-contact hosts per round
	sseStreams   int
	sseEvents    int
	sseInterval  time.Duration
	bulkBytes    int64
	idle         []int
	idleRounds   int
	idleLimit    time.Duration // to open the connections of one idle measurement
	idleWorkers  int
	startRuns    int
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == peerCommand {
		if err := goproxypeer.Main(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "cordon-bench goproxy-peer: %v\n", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "cordon-bench: %v\n", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "cordon-bench: %v\n", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("cordon-bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: cordon-bench [flags]\n\n"+
			"Measures cordon's proxy next to a direct connection, a goproxy-based peer and\n"+
			"mitmproxy, and prints one table of medians. Traffic stays on loopback.\n\n")
		fs.PrintDefaults()
	}
	fs.BoolVar(&cfg.short, "short", false, "a quick run: fewer rounds, shorter loads, 500 idle connections only")
	fs.StringVar(&cfg.cordonPath, "cordon", "", "cordon binary (default bin/cordon or ../bin/cordon, built if missing)")
	fs.StringVar(&cfg.baselinePath, "baseline", "",
		"another cordon binary to measure in the same run, as the subject \"baseline\" (to compare a change)")
	fs.BoolVar(&cfg.build, "build", false, "build cordon from this checkout first, even if the binary exists")
	fs.StringVar(&cfg.jsonPath, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&cfg.mitmdump, "mitmdump", "mitmdump", "mitmproxy's mitmdump command")
	proxyArgs := fs.String("proxy-args", "", `extra arguments for "cordon proxy", separated by spaces`)
	only := fs.String("subjects", "", "comma-separated subjects to measure (default all: direct,cordon,goproxy,mitmproxy)")
	fs.BoolVar(&cfg.verbose, "v", false, "say what is being measured as it goes")
	rounds := fs.Int("rounds", 0, "rounds (default 5, short 3)")
	duration := fs.Duration("duration", 0, "length of each load measurement (default 2s, short 300ms)")
	fs.IntVar(&cfg.workers, "clients", 8, "concurrent clients in the load measurements")
	bulkMiB := fs.Int64("bulk-mib", 0, "MiB per bulk transfer (default 256, short 16)")
	idle := fs.String("idle", "", "idle connection counts to hold (default 1000,10000; short 500)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	if cfg.short {
		cfg.rounds, cfg.duration, cfg.bulkBytes = 3, 300*time.Millisecond, 16<<20
		cfg.newHosts, cfg.sseStreams, cfg.sseEvents, cfg.sseInterval = 3, 2, 20, 5*time.Millisecond
		cfg.idle, cfg.idleRounds, cfg.idleLimit, cfg.startRuns = []int{500}, 1, 30*time.Second, 7
	} else {
		cfg.rounds, cfg.duration, cfg.bulkBytes = 5, 2*time.Second, 256<<20
		cfg.newHosts, cfg.sseStreams, cfg.sseEvents, cfg.sseInterval = 8, 3, 40, 10*time.Millisecond
		cfg.idle, cfg.idleRounds, cfg.idleLimit, cfg.startRuns = []int{1000, 10000}, 1, 4*time.Minute, 21
	}
	cfg.maxPerWorker = 1_000_000
	cfg.idleWorkers = 16
	cfg.proxyArgs = strings.Fields(*proxyArgs)
	if *rounds > 0 {
		cfg.rounds = *rounds
	}
	if *duration > 0 {
		cfg.duration = *duration
	}
	if *bulkMiB > 0 {
		cfg.bulkBytes = *bulkMiB << 20
	}
	if *idle != "" {
		cfg.idle = nil
		for f := range strings.SplitSeq(*idle, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 100_000 {
				return nil, fmt.Errorf("--idle %q: want counts from 1 to 100000", *idle)
			}
			cfg.idle = append(cfg.idle, n)
		}
	}
	if cfg.workers < 1 || cfg.workers > 256 {
		return nil, errors.New("--clients must be from 1 to 256")
	}
	if *only != "" {
		for name := range strings.SplitSeq(*only, ",") {
			name = strings.TrimSpace(name)
			if !slices.Contains([]string{direct, cordon, goproxy, mitmproxy}, name) {
				return nil, fmt.Errorf("--subjects: unknown subject %q", name)
			}
			cfg.only = append(cfg.only, name)
		}
	}
	return cfg, nil
}

// wanted reports whether the run measures the named subject.
func (cfg *config) wanted(name string) bool {
	return len(cfg.only) == 0 || slices.Contains(cfg.only, name)
}

func run(cfg *config) error {
	begin := time.Now()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	fileLimit := raiseFileLimit(200_000)
	mach := describeMachine()
	mach.FileLimit = fileLimit
	if most := slices.Max(append(cfg.idle, 0)); fileLimit < uint64(2*most+1000) {
		fmt.Fprintf(os.Stderr, "cordon-bench: the descriptor limit is %s and cannot be raised further here; "+
			"a proxy that needs more than one descriptor per connection is not measured at %s\n",
			thousands(float64(fileLimit)), thousands(float64(most)))
	}

	if err := findCordon(ctx, cfg); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "cordon-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	secret, err := randomSecret()
	if err != nil {
		return err
	}
	up, err := startUpstream(dir, secret)
	if err != nil {
		return fmt.Errorf("starting the upstream: %w", err)
	}
	defer up.close()

	hosts := make([]string, cfg.rounds*cfg.newHosts)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("new-%03d.%s", i, benchDomain)
	}

	progress("starting the subjects")
	subjects, err := startSubjects(ctx, cfg, dir, up, hosts)
	defer func() {
		for _, s := range subjects {
			s.stop(5 * time.Second)
		}
	}()
	if err != nil {
		return err
	}

	rep := newReport(cfg, mach, subjects)
	b := &bench{cfg: cfg, up: up, rep: rep, hosts: hosts}
	for _, s := range subjects {
		if s.absent != "" {
			continue
		}
		c, err := newClient(s, up)
		if err != nil {
			return err
		}
		b.clients = append(b.clients, c)
	}

	b.warmUp(ctx)
	for round := range cfg.rounds {
		if ctx.Err() != nil {
			break
		}
		t := time.Now()
		b.round(ctx, round)
		progress(fmt.Sprintf("round %d of %d done in %.1fs", round+1, cfg.rounds, time.Since(t).Seconds()))
	}
	for round := range cfg.idleRounds {
		if ctx.Err() != nil {
			break
		}
		t := time.Now()
		b.idle(ctx, round)
		progress(fmt.Sprintf("idle connections, round %d of %d, done in %.1fs",
			round+1, cfg.idleRounds, time.Since(t).Seconds()))
	}
	if ctx.Err() == nil && cfg.wanted(cordon) {
		t := time.Now()
		workspace := filepath.Join(dir, "workspace")
		if err := os.Mkdir(workspace, 0o700); err != nil {
			return err
		}
		b.starts(ctx, filepath.Join(dir, cordon+"-home"), workspace)
		progress(fmt.Sprintf("sandbox starts done in %.1fs", time.Since(t).Seconds()))
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}

	// Stop the proxies before reading their logs, so that what they say
	// on the way out (dropped log records, for one) is there too.
	for _, s := range subjects {
		s.stop(5 * time.Second)
	}
	rep.finish(subjects, up, time.Since(begin))
	rep.printTable(os.Stdout)
	if cfg.jsonPath != "" {
		if err := rep.writeJSON(cfg.jsonPath); err != nil {
			return err
		}
	}
	return nil
}

// startSubjects starts every wanted subject. cordon must start; a peer
// that cannot is reported absent and the run goes on without it.
func startSubjects(ctx context.Context, cfg *config, dir string, up *upstream,
	hosts []string) ([]*subject, error) {
	var subjects []*subject
	if cfg.wanted(direct) {
		subjects = append(subjects, &subject{name: direct, caPEM: up.ca.PEM})
	}
	if cfg.wanted(cordon) {
		s, err := startCordon(ctx, cfg, dir, up, hosts, cordon, cfg.cordonPath)
		if err != nil {
			return subjects, err
		}
		subjects = append(subjects, s)
	}
	if cfg.baselinePath != "" {
		s, err := startCordon(ctx, cfg, dir, up, hosts, baseline, cfg.baselinePath)
		if err != nil {
			return subjects, fmt.Errorf("--baseline: %w", err)
		}
		subjects = append(subjects, s)
	}
	if cfg.wanted(goproxy) {
		s, err := startGoproxyPeer(dir, up)
		if err != nil {
			s = &subject{name: goproxy, absent: "failed to start: " + err.Error()}
		}
		subjects = append(subjects, s)
	}
	if cfg.wanted(mitmproxy) {
		s, err := startMitmproxy(cfg, dir, up)
		if err != nil {
			s = &subject{name: mitmproxy, absent: "failed to start: " + err.Error()}
		}
		subjects = append(subjects, s)
	}
	need := uint64(slices.Max(append(cfg.idle, 0)) + 1000)
	for _, s := range subjects {
		if s.absent != "" {
			fmt.Fprintf(os.Stderr, "cordon-bench: %s: %s\n", s.name, s.absent)
			continue
		}
		if pid := s.pid(); pid != 0 {
			if limit := procFileLimit(pid); limit < need {
				fmt.Fprintf(os.Stderr, "cordon-bench: %s may open only %d descriptors\n", s.name, limit)
			}
		}
	}
	return subjects, nil
}

// findCordon settles cfg.cordonPath: the flag's value, else bin/cordon
// or ../bin/cordon, built from the checkout when missing or with --build.
func findCordon(ctx context.Context, cfg *config) error {
	if cfg.cordonPath != "" && !cfg.build {
		if _, err := os.Stat(cfg.cordonPath); err != nil {
			return fmt.Errorf("--cordon: %w", err)
		}
		return nil
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	if cfg.cordonPath == "" {
		cfg.cordonPath = filepath.Join(root, "bin", "cordon")
	}
	if _, err := os.Stat(cfg.cordonPath); err == nil && !cfg.build {
		return nil
	}
	fmt.Fprintf(os.Stderr, "cordon-bench: building %s\n", cfg.cordonPath)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", cfg.cordonPath, "./cmd/cordon")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("building cordon: %w", err)
	}
	return nil
}

// repoRoot finds the cordon checkout: the current directory or one above
// it whose go.mod declares cordon's module.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(data), "module github.com/cordon-dev/cordon\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the cordon checkout from here; run from it or give --cordon")
		}
		dir = parent
	}
}

// randomSecret is the credential the upstream expects and the proxies
// inject.
func randomSecret() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return "sk-bench-" + hex.EncodeToString(b), nil
}

// goproxyVersion is the version of goproxy built into this program.
func goproxyVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/elazarl/goproxy" {
				return dep.Version
			}
		}
	}
	return "(unknown version)"
}

// progress says how far the run has come, on stderr.
func progress(msg string) {
	fmt.Fprintf(os.Stderr, "cordon-bench: %s\n", msg)
}

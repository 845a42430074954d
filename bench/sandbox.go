package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// The ways of starting "sh -c true" in new namespaces, in the table's
// order: cordon's, and two bare ones for scale.
const (
	starterCordon  = "cordon run"
	starterUnshare = "unshare"
	starterBwrap   = "bwrap"
)

// starter runs a shell that does nothing in a fresh sandbox.
type starter struct {
	name   string
	argv   []string
	env    []string
	absent string // why it cannot run; "" when it can
}

// starters returns the commands to time. cordon runs its shell agent in
// a sandbox named for the benchmark, in the cordon state directory the
// proxy uses; unshare makes the same namespaces (user, mount, PID,
// network, IPC, UTS) with nothing else; bwrap adds a read-only view of
// the root file system, a /proc and a /dev, closer to what cordon sets up.
func starters(cfg *config, home, workspace string) []*starter {
	list := []*starter{
		{
			name: starterCordon,
			argv: []string{cfg.cordonPath, "run", "--name", "bench-start", "shell", workspace, "--", "-c", "true"},
			env:  append(os.Environ(), "CORDON_HOME="+home),
		},
		{
			name: starterUnshare,
			argv: []string{"unshare", "--user", "--map-root-user", "--mount", "--pid", "--net",
				"--ipc", "--uts", "--fork", "/bin/sh", "-c", "true"},
		},
		{
			name: starterBwrap,
			argv: []string{"bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
				"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "/bin/sh", "-c", "true"},
		},
	}
	for _, s := range list {
		if _, err := exec.LookPath(s.argv[0]); err != nil {
			s.absent = "absent: " + s.argv[0] + " not found"
		}
	}
	return list
}

// runOnce times one start to exit.
func (s *starter) runOnce(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.argv[0], s.argv[1:]...)
	cmd.Env = s.env
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("%s: %v: %s", strings.Join(s.argv, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return elapsed, nil
}

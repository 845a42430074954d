package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/cordon-dev/cordon/internal/audit"
)

// followHistory is how many recent requests --follow shows before the new
// ones, when neither --limit nor --since says otherwise.
const followHistory = 10

// timeLayout is how times are shown to people, in local time.
const timeLayout = "2006-01-02 15:04:05"

// The decisions behind --blocked and --allowed.
var (
	blockedDecisions = []string{audit.DecisionDeny, audit.DecisionError}
	allowedDecisions = []string{audit.DecisionAllow, audit.DecisionBypass}
)

// logFlags are the flags of "policy log".
type logFlags struct {
	sandbox string
	blocked bool
	allowed bool
	since   string
	limit   int
	json    bool
	follow  bool
}

func newPolicyLogCmd(e *env) *cobra.Command {
	var flags logFlags
	cmd := &cobra.Command{
		Use:   "log [--sandbox NAME] [--blocked | --allowed] [--since DURATION] [--limit N] [--json] [--follow]",
		Short: "Show the requests sandboxes made and what was decided for each",
		Long: `Show the requests that went through cordon's proxies and what was decided
for each: allowed, refused (deny), tunnelled without interception (bypass)
or failed on the way (error); the rule that decided; and whose credential
was injected, or why none was. A request that got a 401 through cordon
usually shows here with the reason it carried no credential.

People get a table with one line per sandbox, host and outcome, a count and
when it was last seen. --json prints each request as a JSON object on a
line of its own. --follow prints the last 10 requests (or those that --limit
and --since select), then each new one as it arrives, until interrupted.

--blocked keeps refused and failed requests; --allowed keeps allowed and
bypassed ones. --since takes a duration such as 30m, 2h or 7d. --limit keeps
the newest N requests (before they are grouped in the table).

The log keeps requests for 30 days, and at most a million of them. It
records paths with the names of query parameters but never their values,
and never a header.`,
		Example: `  cordon policy log
  cordon policy log --sandbox review-bot --blocked --since 1h
  cordon policy log --json --limit 100
  cordon policy log --follow`,
		Args:                  noArgs,
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			filter, err := flags.filter(cmd, time.Now())
			if err != nil {
				return err
			}
			dirs, err := e.state()
			if err != nil {
				return err
			}
			r, err := audit.OpenReader(audit.DefaultPath(dirs.State))
			if err != nil {
				return err
			}
			defer r.Close()

			if flags.follow {
				return e.followLog(cmd, r, filter, flags)
			}
			if flags.json {
				return e.printLogJSON(cmd.Context(), r, filter)
			}
			return e.printLogTable(cmd.Context(), r, filter)
		},
	}
	f := cmd.Flags()
	f.StringVar(&flags.sandbox, "sandbox", "", "only the requests of sandbox `NAME`")
	f.BoolVar(&flags.blocked, "blocked", false, "only refused and failed requests")
	f.BoolVar(&flags.allowed, "allowed", false, "only allowed and bypassed requests")
	f.StringVar(&flags.since, "since", "", "only requests of the last `DURATION` (30m, 2h, 7d)")
	f.IntVar(&flags.limit, "limit", 0, "only the newest `N` requests")
	f.BoolVar(&flags.json, "json", false, "print one JSON object per request, one per line")
	f.BoolVarP(&flags.follow, "follow", "f", false, "keep printing requests as they arrive, until interrupted")
	return cmd
}

// filter checks the flags and turns them into a query.
func (o *logFlags) filter(cmd *cobra.Command, now time.Time) (audit.Filter, error) {
	var f audit.Filter
	var err error
	if f.Sandbox, err = sandboxFlag(cmd, o.sandbox); err != nil {
		return f, err
	}
	switch {
	case o.blocked && o.allowed:
		return f, usagef("choose --blocked or --allowed, not both")
	case o.blocked:
		f.Decisions = blockedDecisions
	case o.allowed:
		f.Decisions = allowedDecisions
	}
	if cmd.Flags().Changed("since") {
		d, err := parseSince(o.since)
		if err != nil {
			return f, err
		}
		f.Since = now.Add(-d)
	}
	if cmd.Flags().Changed("limit") {
		if o.limit <= 0 {
			return f, usagef("--limit must be a positive number, got %d", o.limit)
		}
		f.Limit = o.limit
	}
	return f, nil
}

// parseSince reads a positive duration in Go's notation, with "d" for
// days of 24 hours as well: "90s", "30m", "2h", "7d", "1d12h".
func parseSince(s string) (time.Duration, error) {
	bad := usagef("--since %q: use a duration such as 30m, 2h or 7d", s)
	var days time.Duration
	rest := s
	if before, after, ok := strings.Cut(s, "d"); ok {
		n, err := strconv.ParseUint(before, 10, 16)
		if err != nil {
			return 0, bad
		}
		days, rest = time.Duration(n)*24*time.Hour, after
	}
	var d time.Duration
	if rest != "" {
		var err error
		if d, err = time.ParseDuration(rest); err != nil || d < 0 {
			return 0, bad
		}
	}
	if d+days < d {
		return 0, bad // too long to count
	}
	if d+days == 0 {
		return 0, usagef("--since %q: the duration must be more than zero", s)
	}
	return d + days, nil
}

// printLogTable prints the requests grouped for people.
func (e *env) printLogTable(ctx context.Context, r *audit.Reader, f audit.Filter) error {
	groups, err := r.Summary(ctx, f)
	if err != nil {
		return err
	}
	if len(groups) == 0 {
		return e.noteEmptyLog(ctx, r)
	}
	t := newTable(e.stdout, "SANDBOX", "HOST", "DECISION", "RULE", "DETAIL", "COUNT", "LAST SEEN")
	for _, g := range groups {
		t.row(sandboxLabel(g.Sandbox), hostLabel(g.Host, g.Port), g.Decision, g.Rule,
			detail(g.Reason, g.Injected, g.NoInject), strconv.FormatInt(g.Count, 10),
			g.Last.Local().Format(timeLayout))
	}
	return t.flush()
}

// noteEmptyLog tells people, on stderr, why there is nothing to show.
func (e *env) noteEmptyLog(ctx context.Context, r *audit.Reader) error {
	last, err := r.LastID(ctx)
	if err != nil {
		return err
	}
	if last == 0 {
		e.infof("no requests logged yet")
	} else {
		e.infof("no requests match")
	}
	return nil
}

// printLogJSON prints every matching request as a line of JSON.
func (e *env) printLogJSON(ctx context.Context, r *audit.Reader, f audit.Filter) error {
	w := bufio.NewWriter(e.stdout)
	enc := newJSONLines(w)
	err := r.Each(ctx, f, func(ev audit.Event) error {
		return enc.Encode(toEventJSON(ev))
	})
	if err != nil {
		return err
	}
	return w.Flush()
}

// followLog prints recent requests, then new ones as they arrive, until
// the command is interrupted.
func (e *env) followLog(cmd *cobra.Command, r *audit.Reader, f audit.Filter, flags logFlags) error {
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	w := bufio.NewWriter(e.stdout)
	enc := newJSONLines(w)
	show := func(ev audit.Event) error {
		if flags.json {
			return enc.Encode(toEventJSON(ev))
		}
		_, err := io.WriteString(w, requestLine(ev))
		return err
	}

	// Taken before the recent requests are read, so that one written in
	// between is either among them or followed, never lost.
	last, err := r.LastID(ctx)
	if err != nil {
		return err
	}
	history := f
	if !cmd.Flags().Changed("limit") && !cmd.Flags().Changed("since") {
		history.Limit = followHistory
	}
	err = r.Each(ctx, history, func(ev audit.Event) error {
		last = max(last, ev.ID)
		return show(ev)
	})
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		return err
	}

	f.AfterID = last
	err = r.Follow(ctx, f, func(ev audit.Event) error {
		if err := show(ev); err != nil {
			return err
		}
		return w.Flush()
	})
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil // interrupted: the normal way to stop following
	}
	return err
}

// eventJSON is the stable JSON form of a request.
type eventJSON struct {
	ID          int64   `json:"id"`
	Time        string  `json:"time"`
	Sandbox     string  `json:"sandbox"`
	Method      string  `json:"method"`
	Scheme      string  `json:"scheme"`
	Host        string  `json:"host"`
	Port        int     `json:"port"`
	Path        string  `json:"path"`
	Status      int     `json:"status"`
	BytesIn     int64   `json:"bytes_in"`
	BytesOut    int64   `json:"bytes_out"`
	DurationMS  float64 `json:"duration_ms"`
	Intercepted bool    `json:"intercepted"`
	Decision    string  `json:"decision"`
	Rule        string  `json:"rule"`
	Reason      string  `json:"reason"`
	Injected    string  `json:"injected"`
	NoInject    string  `json:"no_inject"`
}

func toEventJSON(ev audit.Event) eventJSON {
	return eventJSON{
		ID: ev.ID, Time: ev.Time.UTC().Format(time.RFC3339Nano), Sandbox: ev.Sandbox,
		Method: ev.Method, Scheme: ev.Scheme, Host: ev.Host, Port: ev.Port, Path: ev.Path,
		Status: ev.Status, BytesIn: ev.BytesIn, BytesOut: ev.BytesOut,
		DurationMS:  float64(ev.Duration.Microseconds()) / 1000,
		Intercepted: ev.Intercepted, Decision: ev.Decision, Rule: ev.Rule, Reason: ev.Reason,
		Injected: ev.Injected, NoInject: ev.NoInject,
	}
}

// newJSONLines returns an encoder that writes each value on one line.
func newJSONLines(w io.Writer) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc
}

// requestLine renders one request for people following the log:
//
//	2025-03-01 12:00:00  allow   200  review-bot  POST https://api.openai.com/v1/chat  injected openai
func requestLine(ev audit.Event) string {
	status := "-"
	if ev.Status != 0 {
		status = strconv.Itoa(ev.Status)
	}
	// A tunnel is shown by its authority, as CONNECT names it.
	target := net.JoinHostPort(ev.Host, strconv.Itoa(ev.Port))
	if ev.Method != "CONNECT" {
		target = ev.Scheme + "://" + hostLabel(ev.Host, ev.Port) + ev.Path
	}
	line := fmt.Sprintf("%s  %-6s  %3s  %s  %s %s", ev.Time.Local().Format(timeLayout),
		cell(ev.Decision), status, cell(sandboxLabel(ev.Sandbox)), cell(ev.Method), cell(target))
	if d := detail(ev.Reason, ev.Injected, ev.NoInject); d != "" {
		line += "  " + cell(d)
	}
	if ev.Rule != "" {
		line += "  [" + cell(ev.Rule) + "]"
	}
	return line + "\n"
}

// sandboxLabel names a sandbox for people; "" is the global scope, which
// no sandbox name can be mistaken for.
func sandboxLabel(sandbox string) string {
	if sandbox == "" {
		return "(global)"
	}
	return sandbox
}

// hostLabel shows a destination as host, or host:port when the port is
// not the usual one for HTTP or HTTPS.
func hostLabel(host string, port int) string {
	if port == 0 || port == 443 || port == 80 {
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// detail says in a few words what happened besides the decision: why the
// request was refused or failed, and whose credential it carried, or why
// it carried none.
func detail(reason, injected, noInject string) string {
	var parts []string
	if reason != "" {
		parts = append(parts, reason)
	}
	switch {
	case injected != "":
		parts = append(parts, "injected "+injected)
	case noInject != "":
		parts = append(parts, "no credential: "+noInject)
	}
	return strings.Join(parts, "; ")
}

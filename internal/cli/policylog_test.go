package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/cordon-dev/cordon/internal/audit"
)

// logHome makes a fresh CORDON_HOME and returns the request log in it,
// open for writing as a proxy would have it.
func logHome(t *testing.T) (home string, l *audit.Log) {
	t.Helper()
	home = t.TempDir()
	t.Setenv("CORDON_HOME", home)
	l, err := audit.Open(audit.DefaultPath(home), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return home, l
}

func flushLog(t *testing.T, l *audit.Log) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// cordon runs the command line and returns its exit code and output.
func cordon(args ...string) (code int, stdout, stderr string) {
	var out, errs bytes.Buffer
	code = Main(args, strings.NewReader(""), &out, &errs)
	return code, out.String(), errs.String()
}

// logStart is when the fixture's first request started: recent enough to
// be kept, and a whole second so that the table's times are exact.
var logStart = time.Now().Add(-3 * time.Hour).Truncate(time.Second)

// writeFixture records requests from two sandboxes and the global scope,
// with every decision, ten minutes apart. Their IDs are 1 to 7.
func writeFixture(t *testing.T, l *audit.Log) {
	t.Helper()
	events := []audit.Event{
		{Sandbox: "a", Method: "POST", Host: "api.openai.com", Port: 443, Path: "/v1/chat/completions",
			Status: 200, Decision: "allow", Rule: "preset balanced", Injected: "openai", Intercepted: true},
		{Sandbox: "a", Method: "POST", Host: "api.openai.com", Port: 443, Path: "/v1/chat/completions",
			Status: 200, Decision: "allow", Rule: "preset balanced", Injected: "openai", Intercepted: true},
		{Sandbox: "a", Method: "CONNECT", Host: "evil.example", Port: 443, Status: 403,
			Decision: "deny", Reason: "no rule allows evil.example"},
		{Sandbox: "b", Method: "GET", Host: "llm.internal.example.com", Port: 8443, Path: "/v1/models",
			Status: 401, Decision: "allow", Rule: "provider my-llm", NoInject: "no secret for my-llm in this scope",
			Intercepted: true},
		{Sandbox: "b", Method: "CONNECT", Host: "pinned.example", Port: 443, Status: 200,
			Decision: "bypass", Rule: "bypass pinned.example", NoInject: "host bypassed"},
		{Method: "GET", Host: "10.0.0.5", Port: 80, Scheme: "http", Path: "/", Status: 502,
			Decision: "error", Reason: "upstream refused the connection"},
		{Sandbox: "a", Method: "POST", Host: "api.openai.com", Port: 443, Path: "/v1/chat/completions",
			Status: 200, Decision: "allow", Rule: "preset balanced", Injected: "openai", Intercepted: true},
	}
	for i, e := range events {
		e.Time = logStart.Add(time.Duration(i) * 10 * time.Minute)
		if e.Scheme == "" {
			e.Scheme = "https"
		}
		l.Record(e)
	}
	flushLog(t, l)
}

func seen(i int) string {
	return logStart.Add(time.Duration(i-1) * 10 * time.Minute).Local().Format(timeLayout)
}

func TestPolicyLogTable(t *testing.T) {
	_, l := logHome(t)
	writeFixture(t, l)

	tests := []struct {
		args []string
		want []string
	}{
		{nil, []string{
			"SANDBOX   HOST                           DECISION  RULE                   DETAIL                                             COUNT  LAST SEEN",
			"(global)  10.0.0.5                       error     -                      upstream refused the connection                    1      " + seen(6),
			"a         api.openai.com                 allow     preset balanced        injected openai                                    3      " + seen(7),
			"a         evil.example                   deny      -                      no rule allows evil.example                        1      " + seen(3),
			"b         llm.internal.example.com:8443  allow     provider my-llm        no credential: no secret for my-llm in this scope  1      " + seen(4),
			"b         pinned.example                 bypass    bypass pinned.example  no credential: host bypassed                       1      " + seen(5),
		}},
		{[]string{"--sandbox", "a", "--blocked"}, []string{
			"SANDBOX  HOST          DECISION  RULE  DETAIL                       COUNT  LAST SEEN",
			"a        evil.example  deny      -     no rule allows evil.example  1      " + seen(3),
		}},
		{[]string{"--allowed", "--limit", "3"}, []string{
			"SANDBOX  HOST                           DECISION  RULE                   DETAIL                                             COUNT  LAST SEEN",
			"a        api.openai.com                 allow     preset balanced        injected openai                                    1      " + seen(7),
			"b        llm.internal.example.com:8443  allow     provider my-llm        no credential: no secret for my-llm in this scope  1      " + seen(4),
			"b        pinned.example                 bypass    bypass pinned.example  no credential: host bypassed                       1      " + seen(5),
		}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := cordon(append([]string{"policy", "log"}, tt.args...)...)
			if code != 0 || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			got := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			for i := range got {
				got[i] = strings.TrimRight(got[i], " ")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// jsonIDs runs policy log --json with args and returns the IDs printed.
func jsonIDs(t *testing.T, args ...string) []int64 {
	t.Helper()
	code, stdout, stderr := cordon(append([]string{"policy", "log", "--json"}, args...)...)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var ids []int64
	for line := range strings.Lines(stdout) {
		var ev struct{ ID int64 }
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		ids = append(ids, ev.ID)
	}
	return ids
}

func TestPolicyLogFilters(t *testing.T) {
	_, l := logHome(t)
	writeFixture(t, l)
	// Requests are 10 minutes apart, the last started 2 hours ago.
	since := time.Since(logStart.Add(35 * time.Minute)).Round(time.Minute).String()

	tests := []struct {
		args []string
		want []int64
	}{
		{nil, []int64{1, 2, 3, 4, 5, 6, 7}},
		{[]string{"--sandbox", "a"}, []int64{1, 2, 3, 7}},
		{[]string{"--sandbox", "nobody"}, nil},
		{[]string{"--blocked"}, []int64{3, 6}},
		{[]string{"--allowed"}, []int64{1, 2, 4, 5, 7}},
		{[]string{"--since", since}, []int64{5, 6, 7}},
		{[]string{"--since", "1d"}, []int64{1, 2, 3, 4, 5, 6, 7}},
		{[]string{"--since", "1h"}, nil},
		{[]string{"--limit", "2"}, []int64{6, 7}},
		{[]string{"--sandbox", "a", "--allowed", "--limit", "2"}, []int64{2, 7}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			if diff := cmp.Diff(tt.want, jsonIDs(t, tt.args...)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// The JSON form has stable snake_case names, every field present.
func TestPolicyLogJSONFields(t *testing.T) {
	_, l := logHome(t)
	start := time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)
	l.Record(audit.Event{
		Time: start, Sandbox: "box", Method: "GET", Scheme: "https", Host: "api.example.com",
		Port: 443, Path: audit.RedactTarget("/v1/x", "key=SECRET&alt=json"), Status: 200,
		BytesIn: 12, BytesOut: 3456, Duration: 1500 * time.Microsecond, Intercepted: true,
		Decision: "allow", Rule: "allow api.example.com", Injected: "example",
	})
	l.Record(audit.Event{Time: start, Method: "CONNECT", Host: "x.example", Port: 443, Decision: "deny"})
	flushLog(t, l)

	code, stdout, stderr := cordon("policy", "log", "--json")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var got []map[string]any
	for line := range strings.Lines(stdout) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, m)
	}
	want := []map[string]any{
		{
			"id": 1.0, "time": "2030-01-02T03:04:05.000006Z", "sandbox": "box", "method": "GET",
			"scheme": "https", "host": "api.example.com", "port": 443.0, "path": "/v1/x?key=&alt=",
			"status": 200.0, "bytes_in": 12.0, "bytes_out": 3456.0, "duration_ms": 1.5,
			"intercepted": true, "decision": "allow", "rule": "allow api.example.com",
			"reason": "", "injected": "example", "no_inject": "",
		},
		{
			"id": 2.0, "time": "2030-01-02T03:04:05.000006Z", "sandbox": "", "method": "CONNECT",
			"scheme": "", "host": "x.example", "port": 443.0, "path": "",
			"status": 0.0, "bytes_in": 0.0, "bytes_out": 0.0, "duration_ms": 0.0,
			"intercepted": false, "decision": "deny", "rule": "",
			"reason": "", "injected": "", "no_inject": "",
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// With nothing logged, people are told so on stderr and nothing is
// created; scripts get no output.
func TestPolicyLogEmpty(t *testing.T) {
	home := t.TempDir()
	t.Setenv("CORDON_HOME", home)
	tests := []struct {
		args       []string
		wantStderr string
	}{
		{nil, "no requests logged yet\n"},
		{[]string{"--blocked"}, "no requests logged yet\n"},
		{[]string{"--json"}, ""},
	}
	for _, tt := range tests {
		code, stdout, stderr := cordon(append([]string{"policy", "log"}, tt.args...)...)
		if code != 0 || stdout != "" || stderr != tt.wantStderr {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want stderr %q", tt.args, code, stdout, stderr, tt.wantStderr)
		}
	}
	if _, err := os.Stat(audit.DefaultPath(home)); !os.IsNotExist(err) {
		t.Errorf("reading the log created it: %v", err)
	}

	l, err := audit.Open(audit.DefaultPath(home), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Record(audit.Event{Sandbox: "a", Decision: "allow"})
	flushLog(t, l)
	code, stdout, stderr := cordon("policy", "log", "--blocked")
	if code != 0 || stdout != "" || stderr != "no requests match\n" {
		t.Errorf("exit %d, stdout %q, stderr %q; want \"no requests match\"", code, stdout, stderr)
	}
}

func TestPolicyLogBadInput(t *testing.T) {
	t.Setenv("CORDON_HOME", t.TempDir())
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--blocked", "--allowed"}, "cordon: choose --blocked or --allowed, not both\n"},
		{[]string{"--limit", "0"}, "cordon: --limit must be a positive number, got 0\n"},
		{[]string{"--limit", "-3"}, "cordon: --limit must be a positive number, got -3\n"},
		{[]string{"--limit", "many"}, `cordon: invalid argument "many" for "--limit" flag: strconv.ParseInt: parsing "many": invalid syntax` + "\n"},
		{[]string{"--since", "yesterday"}, `cordon: --since "yesterday": use a duration such as 30m, 2h or 7d` + "\n"},
		{[]string{"--since", "-5m"}, `cordon: --since "-5m": use a duration such as 30m, 2h or 7d` + "\n"},
		{[]string{"--since", "1.5d"}, `cordon: --since "1.5d": use a duration such as 30m, 2h or 7d` + "\n"},
		{[]string{"--since", "0s"}, `cordon: --since "0s": the duration must be more than zero` + "\n"},
		{[]string{"--since", ""}, "cordon: --since is empty\n"},
		{[]string{"--sandbox", "Bad Name"}, `cordon: sandbox name "Bad Name": use lower-case letters, digits, '-', '_' and '.', starting with a letter or digit` + "\n"},
		{[]string{"extra"}, `cordon: cordon policy log takes no arguments, got "extra"` + "\n"},
	}
	for _, tt := range tests {
		code, stdout, stderr := cordon(append([]string{"policy", "log"}, tt.args...)...)
		if code != exitUsage || stdout != "" || stderr != tt.want {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit 2 and %q", tt.args, code, stdout, stderr, tt.want)
		}
	}
}

func TestParseSince(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"90s", 90 * time.Second},
		{"30m", 30 * time.Minute},
		{"2h", 2 * time.Hour},
		{"7d", 7 * 24 * time.Hour},
		{"1d12h", 36 * time.Hour},
		{"0d5m", 5 * time.Minute},
	}
	for _, tt := range tests {
		got, err := parseSince(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseSince(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "d", "7", "7dd", "d7", "7d-1h", "1w", "65536d", "2562047h1d"} {
		if got, err := parseSince(in); err == nil {
			t.Errorf("parseSince(%q) = %v, want an error", in, got)
		}
	}
}

func TestRequestLine(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.Local)
	stamp := at.Format(timeLayout)
	tests := []struct {
		ev   audit.Event
		want string
	}{
		{
			audit.Event{Time: at, Sandbox: "box", Method: "POST", Scheme: "https", Host: "api.openai.com",
				Port: 443, Path: "/v1/chat?stream=", Status: 200, Decision: "allow", Rule: "preset balanced",
				Injected: "openai"},
			stamp + "  allow   200  box  POST https://api.openai.com/v1/chat?stream=  injected openai  [preset balanced]",
		},
		{
			audit.Event{Time: at, Method: "CONNECT", Host: "evil.example", Port: 8443, Status: 403,
				Decision: "deny", Reason: "no rule allows evil.example:8443"},
			stamp + "  deny    403  (global)  CONNECT evil.example:8443  no rule allows evil.example:8443",
		},
		{
			audit.Event{Time: at, Sandbox: "box", Method: "CONNECT", Host: "pinned.example", Port: 443,
				Status: 200, Decision: "bypass", Rule: "bypass pinned.example", NoInject: "host bypassed"},
			stamp + "  bypass  200  box  CONNECT pinned.example:443  no credential: host bypassed  [bypass pinned.example]",
		},
		{
			audit.Event{Time: at, Sandbox: "box", Method: "GET", Scheme: "http", Host: "::1", Port: 8080,
				Path: "/", Decision: "error", Reason: "line\nbreak\x1b[2J"},
			stamp + "  error     -  box  GET http://[::1]:8080/  line?break?[2J",
		},
	}
	for _, tt := range tests {
		if got := requestLine(tt.ev); got != tt.want+"\n" {
			t.Errorf("requestLine:\n got %q\nwant %q", got, tt.want+"\n")
		}
	}
}

// --follow, run as the real binary: it shows recent requests, then those
// written afterwards by another process, and ends cleanly on SIGINT.
func TestPolicyLogFollow(t *testing.T) {
	bin, err := exec.LookPath("cordon")
	if err != nil {
		t.Skipf("the test binary is not installed as cordon: %v", err)
	}
	tests := []struct {
		name     string
		args     []string
		oldShown int // how many of the 15 requests logged before are shown
		format   func(path string) string
	}{
		{"json", []string{"--json"}, 10, func(path string) string { return `"path":"` + path + `"` }},
		{"people", nil, 10, func(path string) string { return " GET https://b.example" + path + "  [r]\n" }},
		{"limit", []string{"--json", "--limit", "2"}, 2, func(path string) string { return `"path":"` + path + `"` }},
		{"blocked", []string{"--blocked"}, 0, func(path string) string { return " GET https://b.example" + path + "  [" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home, l := logHome(t)
			for i := range 15 {
				l.Record(audit.Event{Sandbox: "old", Method: "GET", Scheme: "https", Host: "b.example",
					Path: fmt.Sprintf("/old/%d", i), Decision: "allow", Rule: "r"})
			}
			flushLog(t, l)

			cmd := exec.Command(bin, append([]string{"policy", "log", "--follow"}, tt.args...)...)
			cmd.Env = append(os.Environ(), "CORDON_HOME="+home)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			lines := make(chan string)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text() + "\n"
				}
			}()
			next := func() string {
				select {
				case line := <-lines:
					return line
				case <-time.After(20 * time.Second):
					t.Fatalf("no line from policy log --follow; stderr: %s", stderr.String())
					return ""
				}
			}

			for i := 15 - tt.oldShown; i < 15; i++ {
				want := tt.format(fmt.Sprintf("/old/%d", i))
				if line := next(); !strings.Contains(line, want) {
					t.Fatalf("recent request %d: got %q, want it to contain %q", i, line, want)
				}
			}
			// Written after the follower started, by this process.
			for i := range 3 {
				ev := audit.Event{Sandbox: "new", Method: "GET", Scheme: "https", Host: "b.example",
					Port: 443, Path: fmt.Sprintf("/new/%d", i), Decision: "allow", Rule: "r"}
				if tt.name == "blocked" {
					ev.Decision = "deny"
				}
				l.Record(ev)
				flushLog(t, l)
				want := tt.format(fmt.Sprintf("/new/%d", i))
				if line := next(); !strings.Contains(line, want) {
					t.Fatalf("new request %d: got %q, want it to contain %q", i, line, want)
				}
			}

			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			for line := range lines {
				t.Errorf("unexpected line %q", line)
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("policy log --follow ended with %v on SIGINT; stderr: %s", err, stderr.String())
			}
		})
	}
}

// The command reads the log at the path the proxy writes to.
func TestPolicyLogPath(t *testing.T) {
	home := t.TempDir()
	if got, want := audit.DefaultPath(home), filepath.Join(home, "audit.db"); got != want {
		t.Errorf("DefaultPath = %q, want %q", got, want)
	}
}

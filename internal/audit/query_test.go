package audit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fixture stores a small log: two sandboxes and the global scope, every
// decision, a minute apart.
func fixture(t *testing.T) *Log {
	t.Helper()
	l := openTest(t, "", Options{})
	events := []struct {
		sandbox, host, decision, rule, reason, injected, noInject string
	}{
		{"a", "api.openai.com", DecisionAllow, "preset balanced", "", "openai", ""},               // 1
		{"a", "api.openai.com", DecisionAllow, "preset balanced", "", "openai", ""},               // 2
		{"a", "evil.example", DecisionDeny, "", "no rule allows evil.example", "", ""},            // 3
		{"b", "api.openai.com", DecisionAllow, "preset balanced", "", "", "no secret"},            // 4
		{"b", "pinned.example", DecisionBypass, "bypass pinned.example", "", "", "host bypassed"}, // 5
		{"", "llm.example", DecisionError, "", "upstream refused the connection", "", ""},         // 6
		{"a", "api.openai.com", DecisionAllow, "preset balanced", "", "openai", ""},               // 7
	}
	for i, e := range events {
		l.Record(Event{
			Time: base.Add(time.Duration(i) * time.Minute), Sandbox: e.sandbox, Method: "GET",
			Scheme: "https", Host: e.host, Port: 443, Path: "/", Decision: e.decision, Rule: e.rule,
			Reason: e.reason, Injected: e.injected, NoInject: e.noInject,
		})
	}
	flush(t, l)
	return l
}

func ids(events []Event) []int64 {
	var out []int64
	for _, e := range events {
		out = append(out, e.ID)
	}
	return out
}

func TestQueryFilters(t *testing.T) {
	l := fixture(t)
	tests := []struct {
		name   string
		filter Filter
		want   []int64
	}{
		{"all", Filter{}, []int64{1, 2, 3, 4, 5, 6, 7}},
		{"sandbox", Filter{Sandbox: "a"}, []int64{1, 2, 3, 7}},
		{"unknown sandbox", Filter{Sandbox: "zzz"}, nil},
		{"blocked", Filter{Decisions: []string{DecisionDeny, DecisionError}}, []int64{3, 6}},
		{"allowed", Filter{Decisions: []string{DecisionAllow, DecisionBypass}}, []int64{1, 2, 4, 5, 7}},
		{"since", Filter{Since: base.Add(4 * time.Minute)}, []int64{5, 6, 7}},
		{"limit takes the newest", Filter{Limit: 2}, []int64{6, 7}},
		{"limit above the count", Filter{Limit: 100}, []int64{1, 2, 3, 4, 5, 6, 7}},
		{"after", Filter{AfterID: 5}, []int64{6, 7}},
		{"combined", Filter{Sandbox: "a", Decisions: []string{DecisionAllow}, Limit: 2}, []int64{2, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := l.Query(context.Background(), tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, ids(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// Each reads in pages; a limit and the events stored meanwhile are
// handled across them.
func TestEachPages(t *testing.T) {
	l := openTest(t, "", Options{})
	for i := range 2500 {
		e := sample(i)
		if i%2 == 1 {
			e.Decision = DecisionDeny
		}
		l.Record(e)
	}
	flush(t, l)

	tests := []struct {
		name        string
		filter      Filter
		n           int
		first, last string
	}{
		{"all", Filter{}, 2500, "/v1/0", "/v1/2499"},
		{"limit", Filter{Limit: 1500}, 1500, "/v1/1000", "/v1/2499"},
		{"limit and decision", Filter{Limit: 1100, Decisions: []string{DecisionDeny}}, 1100, "/v1/301", "/v1/2499"},
		{"limit and after", Filter{Limit: 2000, AfterID: 1200}, 1300, "/v1/1200", "/v1/2499"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := l.Query(context.Background(), tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.n || got[0].Path != tt.first || got[len(got)-1].Path != tt.last {
				t.Errorf("%d events, %s ... %s; want %d, %s ... %s", len(got), got[0].Path,
					got[len(got)-1].Path, tt.n, tt.first, tt.last)
			}
		})
	}

	// Events stored while Each runs are not part of what it was asked for.
	n := 0
	err := l.reader.Each(context.Background(), Filter{}, func(e Event) error {
		if n == 0 {
			l.Record(sample(9999))
			flush(t, l)
		}
		n++
		return nil
	})
	if err != nil || n != 2500 {
		t.Errorf("Each = %v after %d events, want 2500", err, n)
	}
}

func TestEachStops(t *testing.T) {
	l := fixture(t)
	stop := errors.New("stop")
	n := 0
	err := l.reader.Each(context.Background(), Filter{}, func(Event) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Errorf("Each = %v after %d events; want its callback's error after 3", err, n)
	}
}

func TestSummary(t *testing.T) {
	l := fixture(t)
	g := func(sandbox, host, decision, rule, reason, injected, noInject string, count int64, last int) Group {
		return Group{Sandbox: sandbox, Host: host, Port: 443, Decision: decision, Rule: rule,
			Reason: reason, Injected: injected, NoInject: noInject, Count: count,
			Last: base.Add(time.Duration(last-1) * time.Minute), LastID: int64(last)}
	}
	tests := []struct {
		name   string
		filter Filter
		want   []Group
	}{
		{"all", Filter{}, []Group{
			g("", "llm.example", DecisionError, "", "upstream refused the connection", "", "", 1, 6),
			g("a", "api.openai.com", DecisionAllow, "preset balanced", "", "openai", "", 3, 7),
			g("a", "evil.example", DecisionDeny, "", "no rule allows evil.example", "", "", 1, 3),
			g("b", "api.openai.com", DecisionAllow, "preset balanced", "", "", "no secret", 1, 4),
			g("b", "pinned.example", DecisionBypass, "bypass pinned.example", "", "", "host bypassed", 1, 5),
		}},
		{"limit counts requests, not groups", Filter{Sandbox: "a", Limit: 2}, []Group{
			g("a", "api.openai.com", DecisionAllow, "preset balanced", "", "openai", "", 1, 7),
			g("a", "evil.example", DecisionDeny, "", "no rule allows evil.example", "", "", 1, 3),
		}},
		{"nothing", Filter{Sandbox: "zzz"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := l.Summary(context.Background(), tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// A reader of a log that does not exist yet sees nothing, creates nothing,
// and a follower picks the log up once a proxy creates it.
func TestReaderBeforeLogExists(t *testing.T) {
	setPollInterval(t, 10*time.Millisecond)
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	got, err := r.Query(context.Background(), Filter{})
	if err != nil || got != nil {
		t.Errorf("Query = %v, %v; want nothing", got, err)
	}
	groups, err := r.Summary(context.Background(), Filter{})
	if err != nil || groups != nil {
		t.Errorf("Summary = %v, %v; want nothing", groups, err)
	}
	if last, err := r.LastID(context.Background()); err != nil || last != 0 {
		t.Errorf("LastID = %d, %v", last, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("reading created %v", entries)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan Event)
	done := make(chan error, 1)
	go func() {
		done <- r.Follow(ctx, Filter{}, func(e Event) error {
			events <- e
			return nil
		})
	}()

	time.Sleep(30 * time.Millisecond)
	l := openTest(t, path, Options{})
	l.Record(sample(1))
	flush(t, l)
	select {
	case e := <-events:
		if e.Path != "/v1/1" {
			t.Errorf("followed %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the follower did not see the event")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Follow returned %v, want context.Canceled", err)
	}
}

func setPollInterval(t *testing.T, d time.Duration) {
	old := pollInterval
	pollInterval = d
	t.Cleanup(func() { pollInterval = old })
}

// Follow delivers the events after the ID it is given, including those
// written by another writer while it runs: in order, filtered, each once.
func TestFollow(t *testing.T) {
	setPollInterval(t, 10*time.Millisecond)
	path := filepath.Join(t.TempDir(), FileName)
	writer := openTest(t, path, Options{})
	writer.Record(sample(0))
	flush(t, writer)

	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	last, err := r.LastID(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	// Every other event is a denial; more of them than Follow reads in
	// one query are waiting before it starts.
	record := func(from, to int) {
		for i := from; i < to; i++ {
			e := sample(i)
			if i%2 == 0 {
				e.Decision = DecisionDeny
			}
			writer.Record(e)
		}
		flush(t, writer)
	}
	var want []string
	for i := 2; i < 2600; i += 2 {
		want = append(want, sample(i).Path)
	}
	record(1, 2400)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	enough := errors.New("enough")
	var got []string
	done := make(chan error, 1)
	go func() {
		done <- r.Follow(ctx, Filter{AfterID: last, Decisions: []string{DecisionDeny}}, func(e Event) error {
			got = append(got, e.Path)
			if len(got) == len(want) {
				return enough
			}
			return nil
		})
	}()
	time.Sleep(50 * time.Millisecond)
	record(2400, 2600)

	if err := <-done; err != enough {
		t.Fatalf("Follow = %v after %d events", err, len(got))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

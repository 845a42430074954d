package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// metric is one row of the table.
type metric struct {
	id    string
	label string
	unit  string // req/s, time (stored in µs), MiB/s, KiB, count, ms
	// noRatio leaves out the ratio to direct, for figures direct does not
	// have (the proxy's own CPU and memory).
	noRatio bool
	// target is cordon's target from the design, in words; check says
	// whether the medians meet it.
	target string
	check  func(m map[string]float64) (met, known bool)
}

func metricList(cfg *config) []metric {
	keepAlive := func(m map[string]float64) (bool, bool) {
		c, ok1 := m[cordon]
		d, ok2 := m[direct]
		if !ok1 || !ok2 || d == 0 {
			return false, false
		}
		met := c/d >= 0.45
		if g, ok := m[goproxy]; ok && g > 0 {
			met = met && c/g >= 1.3
		}
		return met, true
	}
	var list []metric
	for _, proto := range []string{"h1", "h2"} {
		name := map[string]string{"h1": "HTTP/1.1", "h2": "HTTP/2"}[proto]
		list = append(list,
			metric{id: "keepalive_" + proto + "_rate", unit: "req/s",
				label:  fmt.Sprintf("keep-alive %s, %d clients", name, cfg.workers),
				target: "≥0.45x direct, ≥1.3x goproxy", check: keepAlive},
			metric{id: "keepalive_" + proto + "_p50", label: "  latency p50", unit: "time"},
			metric{id: "keepalive_" + proto + "_p99", label: "  latency p99", unit: "time"},
			metric{id: "keepalive_" + proto + "_cpu", label: "  proxy CPU per request", unit: "time",
				noRatio: true, target: "<60µs", check: below(60)},
		)
	}
	list = append(list,
		metric{id: "newconn_rate", label: fmt.Sprintf("new connection per request, %d clients", cfg.workers),
			unit: "req/s", target: "≥0.5x direct", check: ratioAtLeast(0.5)},
		metric{id: "newconn_p50", label: "  latency p50", unit: "time"},
		metric{id: "newconn_cpu", label: "  proxy CPU per connection", unit: "time", noRatio: true},
		metric{id: "newconn_leaf_keys", label: "  leaf keys seen for the host", unit: "count", noRatio: true,
			target: "1: no key generation after the first", check: atMost(1)},
		metric{id: "resumed_rate", label: "  the same, offering TLS session resumption", unit: "req/s"},
		metric{id: "resumed_share", label: "    handshakes that resumed", unit: "%", noRatio: true},
		metric{id: "first_contact", label: "first request to a new host", unit: "time"},
		metric{id: "second_contact", label: "  the same host again, new connection", unit: "time"},
		metric{id: "sse_ttfb", label: "SSE time to first event", unit: "time"},
		metric{id: "sse_delay_mean", label: "SSE event delay, mean", unit: "time",
			target: "<0.3ms above direct", check: addedBelow(300)},
		metric{id: "sse_delay_max", label: "SSE event delay, max", unit: "time",
			target: "<5ms above direct", check: addedBelow(5000)},
		metric{id: "bulk_down", label: fmt.Sprintf("bulk download, %d MiB", cfg.bulkBytes>>20), unit: "MiB/s",
			target: "≥0.5x direct", check: ratioAtLeast(0.5)},
		metric{id: "bulk_up", label: fmt.Sprintf("bulk upload, %d MiB", cfg.bulkBytes>>20), unit: "MiB/s",
			target: "≥0.5x direct", check: ratioAtLeast(0.5)},
	)
	for _, n := range cfg.idle {
		key := "_" + strconv.Itoa(n)
		list = append(list,
			metric{id: "idle_rss" + key, unit: "KiB", noRatio: true, target: "<40KiB", check: below(40),
				label: fmt.Sprintf("proxy RSS per idle connection, %s held", thousands(float64(n)))},
			metric{id: "idle_fds" + key, label: "  descriptors left after they closed", unit: "count",
				noRatio: true, target: "0", check: atMost(0)},
			metric{id: "idle_pool" + key, label: "  upstream connections pooled, after", unit: "count",
				noRatio: true},
			metric{id: "idle_threads" + key, label: "  threads after they closed, vs before",
				unit: "count", noRatio: true},
		)
	}
	return list
}

func below(limit float64) func(map[string]float64) (bool, bool) {
	return func(m map[string]float64) (bool, bool) {
		c, ok := m[cordon]
		return c < limit, ok
	}
}

func atMost(limit float64) func(map[string]float64) (bool, bool) {
	return func(m map[string]float64) (bool, bool) {
		c, ok := m[cordon]
		return c <= limit, ok
	}
}

func ratioAtLeast(r float64) func(map[string]float64) (bool, bool) {
	return func(m map[string]float64) (bool, bool) {
		c, ok1 := m[cordon]
		d, ok2 := m[direct]
		if !ok1 || !ok2 || d == 0 {
			return false, false
		}
		return c/d >= r, true
	}
}

func addedBelow(limit float64) func(map[string]float64) (bool, bool) {
	return func(m map[string]float64) (bool, bool) {
		c, ok1 := m[cordon]
		d, ok2 := m[direct]
		if !ok1 || !ok2 {
			return false, false
		}
		return c-d < limit, true
	}
}

// startTarget is the design's bound on "cordon run shell -- -c true".
const startTarget = 50.0 // ms

// report gathers what the run found and prints it.
type report struct {
	cfg      *config
	machine  machine
	subjects []*subject
	metrics  []metric

	values   map[string]map[string][]float64 // metric, subject: one value per round
	notes    map[string]map[string][]string  // metric, subject: remarks
	problems map[string]int                  // "subject: step: error", counted
	idleRuns []idleJSON
	starts   map[string][]float64 // starter: ms per run
	noStart  map[string]string    // starter: why it did not run

	elapsed      time.Duration
	requests     int64
	unauthorized int64
	logs         map[string]logSummary
}

func newReport(cfg *config, m machine, subjects []*subject) *report {
	return &report{
		cfg: cfg, machine: m, subjects: subjects, metrics: metricList(cfg),
		values:   map[string]map[string][]float64{},
		notes:    map[string]map[string][]string{},
		problems: map[string]int{},
		starts:   map[string][]float64{},
		noStart:  map[string]string{},
		logs:     map[string]logSummary{},
	}
}

func (r *report) add(id, subject string, v float64) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	if r.values[id] == nil {
		r.values[id] = map[string][]float64{}
	}
	r.values[id][subject] = append(r.values[id][subject], v)
}

func (r *report) note(id, subject, text string) {
	if r.notes[id] == nil {
		r.notes[id] = map[string][]string{}
	}
	if !slices.Contains(r.notes[id][subject], text) {
		r.notes[id][subject] = append(r.notes[id][subject], text)
	}
}

func (r *report) problem(subject, step string, err error) {
	msg := err.Error()
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	key := subject + ": " + step + ": " + msg
	r.problems[key]++
	fmt.Fprintf(os.Stderr, "cordon-bench: %s\n", key)
}

func (r *report) addStart(name string, ms float64) { r.starts[name] = append(r.starts[name], ms) }

func (r *report) startAbsent(name, why string) { r.noStart[name] = why }

// idleJSON is one idle-connection measurement, in full.
type idleJSON struct {
	Subject       string  `json:"subject"`
	Connections   int     `json:"connections"`
	Opened        int     `json:"opened"`
	OpenSeconds   float64 `json:"open_seconds"`
	RSSBeforeKiB  int64   `json:"rss_before_kib"`
	RSSHeldKiB    int64   `json:"rss_held_kib"`
	RSSAfterKiB   int64   `json:"rss_after_kib"`
	FDsBefore     int     `json:"fds_before"`
	FDsHeld       int     `json:"fds_held"`
	FDsAfter      int     `json:"fds_after"`
	UpstreamAfter int     `json:"upstream_conns_after"`
	ThreadsBefore int     `json:"threads_before"`
	ThreadsHeld   int     `json:"threads_held"`
	ThreadsAfter  int     `json:"threads_after"`
	Error         string  `json:"error,omitempty"`
}

func (r *report) idle(subject string, x *idleResult) {
	j := idleJSON{
		Subject: subject, Connections: x.want, Opened: x.opened, OpenSeconds: x.openTime.Seconds(),
		RSSBeforeKiB: x.before.rssKiB, RSSHeldKiB: x.held.rssKiB, RSSAfterKiB: x.after.rssKiB,
		FDsBefore: x.before.fds, FDsHeld: x.held.fds, FDsAfter: x.after.fds, UpstreamAfter: x.after.upstream,
		ThreadsBefore: x.before.threads, ThreadsHeld: x.held.threads, ThreadsAfter: x.after.threads,
	}
	if x.err != nil {
		j.Error = x.err.Error()
	}
	r.idleRuns = append(r.idleRuns, j)
}

// logSummary is what a proxy wrote to stderr, boiled down.
type logSummary struct {
	Lines    int            `json:"lines"`
	Warnings int            `json:"warnings"`
	Errors   int            `json:"errors"`
	Messages map[string]int `json:"messages,omitempty"` // warnings and errors by message
}

// finish collects what is known only at the end: the upstream's counts
// and the proxies' logs.
func (r *report) finish(subjects []*subject, up *upstream, elapsed time.Duration) {
	r.elapsed = elapsed
	r.machine.LoadEnd = loadAverage()
	r.requests = up.requests.Load()
	r.unauthorized = up.unauthorized.Load()
	for _, s := range subjects {
		if s.stderr != nil {
			r.logs[s.name] = summarizeLog(s.stderrText())
		}
	}
}

// summarizeLog counts the lines of a proxy's stderr and the warnings and
// errors among them. cordon logs with slog's text form (level=WARN
// msg="..."); for other formats every line counts as a message.
func summarizeLog(text string) logSummary {
	sum := logSummary{Messages: map[string]int{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		sum.Lines++
		level := fieldValue(line, "level")
		switch level {
		case "INFO", "DEBUG":
			continue
		case "WARN":
			sum.Warnings++
		case "ERROR":
			sum.Errors++
		}
		// cordon's one event per request says what happened in its
		// status and reason rather than in its message.
		msg := fieldValue(line, "msg")
		if msg == "" {
			msg = line
		}
		for _, key := range []string{"status", "decision", "reason", "err"} {
			if v := fieldValue(line, key); v != "" {
				msg += " " + key + "=" + strconv.Quote(v)
			}
		}
		msg = addrPattern.ReplaceAllString(msg, "ADDR")
		if len(msg) > 160 {
			msg = msg[:160] + "..."
		}
		sum.Messages[msg]++
	}
	return sum
}

// addrPattern matches the addresses and ports in log messages, which
// would otherwise make every message about a connection unique.
var addrPattern = regexp.MustCompile(`\b\d{1,3}(\.\d{1,3}){3}:\d+\b`)

// fieldValue returns the value of key=value in a slog text line.
func fieldValue(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		if !strings.HasPrefix(line, key+"=") {
			return ""
		}
		i = -1
	}
	rest := line[i+len(key)+2:]
	if strings.HasPrefix(rest, `"`) {
		if q, err := strconv.QuotedPrefix(rest); err == nil {
			v, _ := strconv.Unquote(q)
			return v
		}
	}
	v, _, _ := strings.Cut(rest, " ")
	return v
}

// subjectNames returns the wanted subjects in the table's order.
func (r *report) subjectNames() []string {
	var names []string
	for _, s := range r.subjects {
		names = append(names, s.name)
	}
	return names
}

func (r *report) absent(name string) string {
	for _, s := range r.subjects {
		if s.name == name {
			return s.absent
		}
	}
	return ""
}

// medians returns the median of every subject that has values for id.
func (r *report) medians(id string) map[string]float64 {
	m := map[string]float64{}
	for subject, vs := range r.values[id] {
		if len(vs) > 0 {
			m[subject] = medianFloat(vs)
		}
	}
	return m
}

func medianFloat(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func verdict(met, known bool) string {
	switch {
	case !known:
		return ""
	case met:
		return "met"
	default:
		return "MISSED"
	}
}

func (r *report) printTable(out io.Writer) {
	// tabwriter pads every cell, the last ones too; the table goes
	// through a buffer so that its lines lose the trailing blanks.
	var w bytes.Buffer
	defer func() {
		for line := range strings.Lines(w.String()) {
			io.WriteString(out, strings.TrimRight(line, " \n")+"\n")
		}
	}()
	names := r.subjectNames()
	tw := tabwriter.NewWriter(&w, 0, 0, 2, ' ', 0)
	header := append(append([]string{"measurement", "unit"}, names...), "cordon target", "")
	fmt.Fprintln(tw, strings.Join(header, "\t"))

	for _, m := range r.metrics {
		meds := r.medians(m.id)
		row := []string{m.label, unitLabel(m.unit)}
		for _, name := range names {
			row = append(row, r.cell(m, name, meds))
		}
		row = append(row, m.target)
		if m.check != nil {
			row = append(row, verdict(m.check(meds)))
		} else {
			row = append(row, "")
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	r.printStarts(tw, names)
	tw.Flush()

	fmt.Fprintln(&w)
	r.printFootnotes(&w)
}

// cell is one subject's median for m, with its ratio to direct.
func (r *report) cell(m metric, name string, meds map[string]float64) string {
	if why := r.absent(name); why != "" {
		return "absent"
	}
	v, ok := meds[name]
	if !ok {
		if name == direct && m.noRatio {
			return "-"
		}
		if len(r.notes[m.id][name]) > 0 {
			return "n/a*"
		}
		return "n/a"
	}
	s := formatValue(m.unit, v)
	if len(r.notes[m.id][name]) > 0 {
		s += "*"
	}
	if d, ok := meds[direct]; ok && name != direct && !m.noRatio && d != 0 {
		s += " (" + formatRatio(v/d) + ")"
	}
	return s
}

// printStarts adds the sandbox start rows: the bare tools in the direct
// column, cordon run in cordon's with its ratio to unshare.
func (r *report) printStarts(tw io.Writer, names []string) {
	if len(r.starts) == 0 && len(r.noStart) == 0 {
		return
	}
	unshareMs := -1.0
	if vs := r.starts[starterUnshare]; len(vs) > 0 {
		unshareMs = medianFloat(vs)
	}
	for _, name := range []string{starterUnshare, starterBwrap, starterCordon} {
		row := []string{"start to exit, sh -c true: " + name, "time"}
		value := r.noStart[name]
		if vs := r.starts[name]; len(vs) > 0 {
			med := medianFloat(vs)
			value = formatMillis(med)
			if name == starterCordon && unshareMs > 0 {
				value += " (" + formatRatio(med/unshareMs) + " unshare)"
			}
		}
		if value == "" {
			value = "n/a"
		}
		column := direct
		target, status := "", ""
		if name == starterCordon {
			column, target = cordon, "<50ms"
			if vs := r.starts[name]; len(vs) > 0 {
				status = verdict(medianFloat(vs) < startTarget, true)
			}
		}
		if !slices.Contains(names, column) {
			column = names[0] // direct not measured: use the first column
		}
		for _, n := range names {
			if n == column {
				row = append(row, value)
			} else {
				row = append(row, "")
			}
		}
		row = append(row, target, status)
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
}

func (r *report) printFootnotes(w io.Writer) {
	m := r.machine
	fmt.Fprintf(w, "machine: %d cores, %s, %d GiB, Linux %s, %s; %s\n",
		m.Cores, m.CPU, m.MemoryGiB, m.Kernel, m.Go, m.OS)
	fmt.Fprintf(w, "load average: %s at the start, %s at the end\n", m.LoadStart, m.LoadEnd)
	fmt.Fprintf(w, "run: %s mode, %d rounds, %v per load, %s idle, %d sandbox starts each, %.0fs in all\n",
		map[bool]string{true: "short", false: "full"}[r.cfg.short], r.cfg.rounds, r.cfg.duration,
		joinInts(r.cfg.idle), r.cfg.startRuns, r.elapsed.Seconds())
	for _, s := range r.subjects {
		switch {
		case s.absent != "":
			fmt.Fprintf(w, "%s: %s\n", s.name, s.absent)
		case s.version != "":
			fmt.Fprintf(w, "%s: %s\n", s.name, s.version)
		}
	}
	fmt.Fprintln(w, "figures are medians over the rounds; (0.50x) is the ratio to direct; * marks a note below")

	for _, mt := range r.metrics {
		for _, name := range slices.Sorted(maps.Keys(r.notes[mt.id])) {
			for _, n := range r.notes[mt.id][name] {
				fmt.Fprintf(w, "* %s, %s: %s\n", strings.TrimSpace(mt.label), name, n)
			}
		}
	}
	if r.unauthorized > 0 {
		fmt.Fprintf(w, "upstream: %d of %d requests arrived without the credential\n", r.unauthorized, r.requests)
	}
	for _, p := range slices.Sorted(maps.Keys(r.problems)) {
		fmt.Fprintf(w, "problem (%dx): %s\n", r.problems[p], p)
	}
	for _, name := range slices.Sorted(maps.Keys(r.logs)) {
		l := r.logs[name]
		if l.Warnings+l.Errors == 0 && len(l.Messages) == 0 {
			continue
		}
		fmt.Fprintf(w, "%s logged %d lines, %d warnings, %d errors\n", name, l.Lines, l.Warnings, l.Errors)
		msgs := slices.SortedFunc(maps.Keys(l.Messages), func(a, b string) int {
			return l.Messages[b] - l.Messages[a]
		})
		for i, msg := range msgs {
			if i == 5 {
				fmt.Fprintf(w, "  ... and %d more kinds\n", len(msgs)-5)
				break
			}
			fmt.Fprintf(w, "  %dx %s\n", l.Messages[msg], msg)
		}
	}
}

func unitLabel(unit string) string {
	if unit == "count" || unit == "%" {
		return ""
	}
	return unit
}

func formatValue(unit string, v float64) string {
	switch unit {
	case "req/s":
		return thousands(v)
	case "time":
		return formatMicros(v)
	case "MiB/s":
		if v < 10 {
			return strconv.FormatFloat(v, 'f', 1, 64)
		}
		return thousands(v)
	case "KiB":
		return strconv.FormatFloat(v, 'f', 1, 64)
	case "%":
		return strconv.FormatFloat(v, 'f', 0, 64) + "%"
	case "count":
		if v == math.Trunc(v) {
			return strconv.FormatFloat(v, 'f', 0, 64)
		}
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

func formatMicros(us float64) string {
	switch {
	case us >= 10_000:
		return strconv.FormatFloat(us/1000, 'f', 1, 64) + "ms"
	case us >= 1000:
		return strconv.FormatFloat(us/1000, 'f', 2, 64) + "ms"
	case us >= 10:
		return strconv.FormatFloat(us, 'f', 0, 64) + "µs"
	default:
		return strconv.FormatFloat(us, 'f', 1, 64) + "µs"
	}
}

func formatMillis(ms float64) string { return formatMicros(ms * 1000) }

func formatRatio(x float64) string {
	switch {
	case x >= 100:
		return strconv.FormatFloat(x, 'f', 0, 64) + "x"
	case x >= 10:
		return strconv.FormatFloat(x, 'f', 1, 64) + "x"
	default:
		return strconv.FormatFloat(x, 'f', 2, 64) + "x"
	}
}

// thousands formats v rounded, with commas between groups of digits.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func joinInts(ns []int) string {
	var parts []string
	for _, n := range ns {
		parts = append(parts, thousands(float64(n)))
	}
	if len(parts) == 0 {
		return "no"
	}
	return strings.Join(parts, " and ")
}

// The JSON form of the report: the table's figures with every round's
// value, and the details the table leaves out.
type (
	jsonReport struct {
		Command  string                `json:"command"`
		Mode     string                `json:"mode"`
		Seconds  float64               `json:"seconds"`
		Machine  machine               `json:"machine"`
		Config   jsonConfig            `json:"config"`
		Subjects []jsonSubject         `json:"subjects"`
		Metrics  []jsonMetric          `json:"metrics"`
		Starts   []jsonStart           `json:"sandbox_starts"`
		Idle     []idleJSON            `json:"idle_connections"`
		Upstream jsonUpstream          `json:"upstream"`
		Problems map[string]int        `json:"problems,omitempty"`
		Logs     map[string]logSummary `json:"logs,omitempty"`
	}
	jsonConfig struct {
		Rounds        int     `json:"rounds"`
		Clients       int     `json:"clients"`
		LoadSeconds   float64 `json:"load_seconds"`
		NewHosts      int     `json:"new_hosts_per_round"`
		SSEStreams    int     `json:"sse_streams"`
		SSEEvents     int     `json:"sse_events"`
		SSEIntervalMs float64 `json:"sse_interval_ms"`
		BulkBytes     int64   `json:"bulk_bytes"`
		Idle          []int   `json:"idle_connections"`
		SandboxStarts int     `json:"sandbox_starts"`
	}
	jsonSubject struct {
		Name    string `json:"name"`
		Present bool   `json:"present"`
		Absent  string `json:"absent,omitempty"`
		Version string `json:"version,omitempty"`
	}
	jsonMetric struct {
		ID      string              `json:"id"`
		Label   string              `json:"label"`
		Unit    string              `json:"unit"`
		Target  string              `json:"target,omitempty"`
		Verdict string              `json:"verdict,omitempty"`
		Results map[string]jsonCell `json:"results"`
	}
	jsonCell struct {
		Median float64   `json:"median"`
		Ratio  *float64  `json:"ratio_to_direct,omitempty"`
		Rounds []float64 `json:"rounds"`
		Notes  []string  `json:"notes,omitempty"`
	}
	jsonStart struct {
		Name     string    `json:"name"`
		MedianMs float64   `json:"median_ms,omitempty"`
		RunsMs   []float64 `json:"runs_ms,omitempty"`
		Absent   string    `json:"absent,omitempty"`
		Target   string    `json:"target,omitempty"`
		Verdict  string    `json:"verdict,omitempty"`
	}
	jsonUpstream struct {
		Requests     int64 `json:"requests"`
		Unauthorized int64 `json:"unauthorized"`
	}
)

func (r *report) writeJSON(path string) error {
	out := jsonReport{
		Command: strings.Join(os.Args, " "),
		Mode:    map[bool]string{true: "short", false: "full"}[r.cfg.short],
		Seconds: r.elapsed.Seconds(),
		Machine: r.machine,
		Config: jsonConfig{
			Rounds: r.cfg.rounds, Clients: r.cfg.workers, LoadSeconds: r.cfg.duration.Seconds(),
			NewHosts: r.cfg.newHosts, SSEStreams: r.cfg.sseStreams, SSEEvents: r.cfg.sseEvents,
			SSEIntervalMs: float64(r.cfg.sseInterval) / float64(time.Millisecond),
			BulkBytes:     r.cfg.bulkBytes, Idle: r.cfg.idle, SandboxStarts: r.cfg.startRuns,
		},
		Idle:     r.idleRuns,
		Upstream: jsonUpstream{Requests: r.requests, Unauthorized: r.unauthorized},
		Problems: r.problems,
		Logs:     r.logs,
	}
	for _, s := range r.subjects {
		out.Subjects = append(out.Subjects, jsonSubject{
			Name: s.name, Present: s.absent == "", Absent: s.absent, Version: s.version,
		})
	}
	for _, m := range r.metrics {
		meds := r.medians(m.id)
		jm := jsonMetric{ID: m.id, Label: strings.TrimSpace(m.label), Unit: m.unit, Target: m.target,
			Results: map[string]jsonCell{}}
		if m.unit == "time" {
			jm.Unit = "µs"
		}
		if m.check != nil {
			jm.Verdict = strings.ToLower(verdict(m.check(meds)))
		}
		for name, v := range meds {
			cell := jsonCell{Median: v, Rounds: r.values[m.id][name], Notes: r.notes[m.id][name]}
			if d, ok := meds[direct]; ok && name != direct && !m.noRatio && d != 0 {
				ratio := v / d
				cell.Ratio = &ratio
			}
			jm.Results[name] = cell
		}
		out.Metrics = append(out.Metrics, jm)
	}
	for _, name := range []string{starterCordon, starterUnshare, starterBwrap} {
		js := jsonStart{Name: name, RunsMs: r.starts[name], Absent: r.noStart[name]}
		if len(js.RunsMs) > 0 {
			js.MedianMs = medianFloat(js.RunsMs)
		}
		if name == starterCordon {
			js.Target = "<50ms"
			if len(js.RunsMs) > 0 {
				js.Verdict = strings.ToLower(verdict(js.MedianMs < startTarget, true))
			}
		}
		out.Starts = append(out.Starts, js)
	}

	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

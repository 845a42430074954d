package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"
)

// bench runs the measurements and hands what they find to the report.
type bench struct {
	cfg     *config
	up      *upstream
	rep     *report
	clients []*client // of the subjects present, in the table's order
	hosts   []string  // first-contact hosts, cfg.newHosts per round
}

func (b *bench) logf(format string, args ...any) {
	if b.cfg.verbose {
		fmt.Fprintf(os.Stderr, "cordon-bench: "+format+"\n", args...)
	}
}

// rotated returns list starting with its element number round (modulo
// its length), so that no subject always goes first or last.
func rotated[T any](list []T, round int) []T {
	if len(list) == 0 {
		return nil
	}
	k := round % len(list)
	return append(slices.Clone(list[k:]), list[:k]...)
}

// warmUp gives every subject a little of each kind of traffic before the
// first round, so that no subject pays its start-up costs (a heap
// growing, code paths run for the first time) inside a measurement.
func (b *bench) warmUp(ctx context.Context) {
	for _, c := range b.clients {
		for _, h2 := range []bool{false, true} {
			o := clientOptions{keepAlive: true, h2: h2}
			load(ctx, c, o, b.cfg.workers, 200*time.Millisecond, 1000)
		}
		load(ctx, c, clientOptions{}, 2, 100*time.Millisecond, 20)
		stream(ctx, c, 1, 3, time.Millisecond)
		bulk(ctx, c, 4<<20, false)
		bulk(ctx, c, 4<<20, true)
	}
}

// step is one measurement of one subject in one round.
type step struct {
	name string
	run  func(ctx context.Context, c *client, round int) error
}

func (b *bench) steps() []step {
	return []step{
		{"keep-alive HTTP/1.1", func(ctx context.Context, c *client, _ int) error {
			return b.keepAlive(ctx, c, false)
		}},
		{"keep-alive HTTP/2", func(ctx context.Context, c *client, _ int) error {
			return b.keepAlive(ctx, c, true)
		}},
		{"new connections", func(ctx context.Context, c *client, _ int) error {
			return b.newConnections(ctx, c, false)
		}},
		{"new connections, resumed", func(ctx context.Context, c *client, _ int) error {
			return b.newConnections(ctx, c, true)
		}},
		{"first contact", b.firstContact},
		{"SSE", b.stream},
		{"bulk download", func(ctx context.Context, c *client, _ int) error {
			return b.bulk(ctx, c, false)
		}},
		{"bulk upload", func(ctx context.Context, c *client, _ int) error {
			return b.bulk(ctx, c, true)
		}},
	}
}

// round runs every measurement once for every subject: measurement by
// measurement, the subjects in an order rotated each round.
func (b *bench) round(ctx context.Context, round int) {
	order := rotated(b.clients, round)
	for _, st := range b.steps() {
		for _, c := range order {
			if ctx.Err() != nil {
				return
			}
			b.logf("round %d: %s: %s", round+1, st.name, c.s.name)
			if err := st.run(ctx, c, round); err != nil {
				b.rep.problem(c.s.name, st.name, err)
			}
		}
	}
}

func (b *bench) keepAlive(ctx context.Context, c *client, h2 bool) error {
	prefix, want := "keepalive_h1", "HTTP/1.1"
	if h2 {
		prefix, want = "keepalive_h2", "HTTP/2.0"
	}
	o := clientOptions{keepAlive: true, h2: h2}
	r, err := load(ctx, c, o, b.cfg.workers, b.cfg.duration, b.cfg.maxPerWorker)
	if err != nil {
		return err
	}
	name := c.s.name
	b.rep.add(prefix+"_rate", name, r.rate())
	b.rep.add(prefix+"_p50", name, micros(percentile(r.latencies, 0.50)))
	b.rep.add(prefix+"_p99", name, micros(percentile(r.latencies, 0.99)))
	if c.s.pid() != 0 {
		b.rep.add(prefix+"_cpu", name, micros(r.cpu)/float64(r.requests))
	}
	if r.protocol != want {
		b.rep.note(prefix+"_rate", name, "answered over "+r.protocol)
	}
	return loadErrors(r)
}

func (b *bench) newConnections(ctx context.Context, c *client, resume bool) error {
	r, err := load(ctx, c, clientOptions{resume: resume}, b.cfg.workers, b.cfg.duration, b.cfg.maxPerWorker)
	if err != nil {
		return err
	}
	name := c.s.name
	if resume {
		b.rep.add("resumed_rate", name, r.rate())
		// Each client's first handshake has nothing to resume.
		if could := r.handshakes - b.cfg.workers; could > 0 {
			b.rep.add("resumed_share", name, 100*float64(min(r.resumed, could))/float64(could))
		}
		return loadErrors(r)
	}
	b.rep.add("newconn_rate", name, r.rate())
	b.rep.add("newconn_p50", name, micros(percentile(r.latencies, 0.50)))
	if c.s.pid() != 0 {
		b.rep.add("newconn_cpu", name, micros(r.cpu)/float64(r.requests))
		b.rep.add("newconn_leaf_keys", name, float64(r.leafKeys))
	}
	return loadErrors(r)
}

// loadErrors turns failed requests of a load that otherwise ran into an
// error for the report.
func loadErrors(r *loadResult) error {
	if r.errors == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d requests failed, the first: %v", r.errors, r.errors+r.requests, r.firstErr)
}

func (b *bench) firstContact(ctx context.Context, c *client, round int) error {
	n := b.cfg.newHosts
	first, again, err := firstContact(ctx, c, b.hosts[round*n:(round+1)*n])
	if err != nil {
		return err
	}
	b.rep.add("first_contact", c.s.name, micros(median(first)))
	b.rep.add("second_contact", c.s.name, micros(median(again)))
	return nil
}

func (b *bench) stream(ctx context.Context, c *client, _ int) error {
	r, err := stream(ctx, c, b.cfg.sseStreams, b.cfg.sseEvents, b.cfg.sseInterval)
	if err != nil {
		return err
	}
	b.rep.add("sse_ttfb", c.s.name, micros(median(r.ttfb)))
	b.rep.add("sse_delay_mean", c.s.name, micros(r.mean()))
	b.rep.add("sse_delay_max", c.s.name, micros(r.worst))
	return nil
}

func (b *bench) bulk(ctx context.Context, c *client, upload bool) error {
	limit := 2 * time.Minute
	if b.cfg.short {
		limit = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	rate, err := bulk(ctx, c, b.cfg.bulkBytes, upload)
	if err != nil {
		return err
	}
	id := "bulk_down"
	if upload {
		id = "bulk_up"
	}
	b.rep.add(id, c.s.name, rate)
	return nil
}

// idle holds each count of idle connections through each proxy in turn.
// A count that would need more descriptors than the benchmark or the
// proxy may open, judging by what a smaller count needed, is skipped
// rather than run into the limit.
func (b *bench) idle(ctx context.Context, round int) {
	perConn := map[string]float64{} // descriptors per held connection, seen so far
	refusedPast := map[string]int{} // connections held when the proxy refused more
	for _, n := range b.cfg.idle {
		for _, c := range rotated(b.clients, round) {
			if c.s.pid() == 0 || ctx.Err() != nil {
				continue
			}
			// Past a count the proxy refused, a larger one would only
			// hold the same connections again, in memory the proxy kept
			// from the last time, and so show a growth that means nothing.
			if held, ok := refusedPast[c.s.name]; ok {
				b.rep.note("idle_rss_"+strconv.Itoa(n), c.s.name, fmt.Sprintf(
					"not measured: it held no more than %s before", thousands(float64(held))))
				continue
			}
			limit := b.rep.machine.FileLimit
			if own := procFileLimit(c.s.pid()); own > 0 {
				limit = min(limit, own)
			}
			if need := uint64(float64(n)*max(perConn[c.s.name], 1)) + 1000; need > limit {
				b.rep.note("idle_rss_"+strconv.Itoa(n), c.s.name, fmt.Sprintf(
					"not measured: holding %s connections would take about %s descriptors, and the limit is %s",
					thousands(float64(n)), thousands(float64(need)), thousands(float64(limit))))
				continue
			}
			b.logf("idle connections: %d through %s", n, c.s.name)
			r := holdIdle(ctx, c, n, b.cfg.idleWorkers, b.cfg.idleLimit)
			b.rep.idle(c.s.name, r)
			if r.opened > 0 {
				perConn[c.s.name] = float64(r.held.fds-r.before.fds) / float64(r.opened)
			}
			if r.opened < n {
				refusedPast[c.s.name] = r.opened
			}
			// A proxy that refused some of the connections is still
			// measured over those it held, with a note saying so.
			if r.opened < 100 {
				if r.err != nil {
					b.rep.problem(c.s.name, "idle "+strconv.Itoa(n), r.err)
				}
				continue
			}
			key := "_" + strconv.Itoa(n)
			b.rep.add("idle_rss"+key, c.s.name, r.rssPerConn())
			// Connections to the upstream kept for reuse are counted on
			// their own: a pool is bounded, and not something left behind.
			b.rep.add("idle_fds"+key, c.s.name,
				float64((r.after.fds-r.after.upstream)-(r.before.fds-r.before.upstream)))
			b.rep.add("idle_pool"+key, c.s.name, float64(r.after.upstream))
			b.rep.add("idle_threads"+key, c.s.name, float64(r.after.threads-r.before.threads))
			if r.opened < n {
				b.rep.note("idle_rss"+key, c.s.name, fmt.Sprintf("held only %s of %s, then: %v",
					thousands(float64(r.opened)), thousands(float64(n)), r.err))
			}
		}
	}
}

// starts times "sh -c true" in a new sandbox: cordon run, unshare and
// bwrap in turn, after one untimed run of each (cordon's first creates
// the sandbox).
func (b *bench) starts(ctx context.Context, home, workspace string) {
	list := starters(b.cfg, home, workspace)
	var present []*starter
	for _, s := range list {
		if s.absent != "" {
			b.rep.startAbsent(s.name, s.absent)
			continue
		}
		if _, err := s.runOnce(ctx); err != nil {
			b.rep.startAbsent(s.name, "failed: "+err.Error())
			continue
		}
		present = append(present, s)
	}
	for i := range b.cfg.startRuns {
		for _, s := range rotated(present, i) {
			if ctx.Err() != nil {
				return
			}
			d, err := s.runOnce(ctx)
			if err != nil {
				b.rep.problem(s.name, "start to exit", err)
				continue
			}
			b.rep.addStart(s.name, float64(d)/float64(time.Millisecond))
		}
	}
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

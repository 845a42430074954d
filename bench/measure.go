package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// maxConsecutiveErrors stops a load worker whose subject keeps failing,
// rather than spinning on errors until the time is up.
const maxConsecutiveErrors = 50

// loadResult is what one load measurement found.
type loadResult struct {
	requests            int // answered with 200
	errors              int
	firstErr            error
	elapsed             time.Duration
	latencies           []time.Duration // sorted
	protocol            string          // of the answers, such as "HTTP/2.0"
	cpu                 time.Duration   // the proxy's CPU time during the load; 0 for direct
	leafKeys            int             // distinct leaf public keys seen
	handshakes, resumed int             // TLS handshakes, and how many resumed a session
}

func (r *loadResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

// percentile returns the latency below which a fraction p of requests
// finished.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

// handshakes counts TLS handshakes, those that resumed a session, and
// the distinct public keys of the certificates they were answered with.
type handshakes struct {
	mu      sync.Mutex
	keys    map[[32]byte]struct{}
	total   int
	resumed int
}

func (h *handshakes) add(cs tls.ConnectionState) {
	var sum [32]byte
	if len(cs.PeerCertificates) > 0 {
		sum = sha256.Sum256(cs.PeerCertificates[0].RawSubjectPublicKeyInfo)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.total++
	if cs.DidResume {
		h.resumed++
	}
	if len(cs.PeerCertificates) > 0 {
		h.keys[sum] = struct{}{}
	}
}

// load sends GET /v1/models from workers concurrent clients for dur (and
// at most maxPerWorker requests each). With keep-alive every worker first
// makes one request, so that the connections exist before the clock
// starts; without it every request opens a connection of its own. The
// subject's CPU time is read around the load.
func load(ctx context.Context, c *client, o clientOptions,
	workers int, dur time.Duration, maxPerWorker int) (*loadResult, error) {
	seen := &handshakes{keys: map[[32]byte]struct{}{}}
	o.onHandshake = seen.add
	tr := c.transport(o)
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	if o.keepAlive {
		var wg sync.WaitGroup
		errs := make([]error, workers)
		for w := range workers {
			wg.Go(func() { _, errs[w] = c.get(ctx, hc, apiHost, "/v1/models") })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("warming up: %w", err)
		}
	}

	cpuBefore := procCPU(c.s.pid())
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		res       = &loadResult{}
		perWorker = make([][]time.Duration, workers)
	)
	start := time.Now()
	deadline := start.Add(dur)
	for w := range workers {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 4096)
			failures := 0
			var protocol string
			for i := 0; i < maxPerWorker && time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				t := time.Now()
				proto, err := c.get(ctx, hc, apiHost, "/v1/models")
				if err != nil {
					mu.Lock()
					res.errors++
					if res.firstErr == nil {
						res.firstErr = err
					}
					mu.Unlock()
					if failures++; failures >= maxConsecutiveErrors {
						break
					}
					continue
				}
				failures = 0
				lat = append(lat, time.Since(t))
				protocol = proto
			}
			mu.Lock()
			perWorker[w] = lat
			if protocol != "" {
				res.protocol = protocol
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	if c.s.pid() != 0 {
		res.cpu = procCPU(c.s.pid()) - cpuBefore
	}
	for _, lat := range perWorker {
		res.latencies = append(res.latencies, lat...)
	}
	slices.Sort(res.latencies)
	res.requests = len(res.latencies)
	res.leafKeys, res.handshakes, res.resumed = len(seen.keys), seen.total, seen.resumed
	if res.requests == 0 {
		return res, fmt.Errorf("no request succeeded: %v", res.firstErr)
	}
	return res, nil
}

// firstContact asks for /v1/models once from each host, each time on a
// new connection without TLS resumption, and then once more from the same
// host the same way. The first request through a proxy is the first that
// proxy sees of the host: it includes minting a leaf certificate and
// opening the proxy's first connection to that upstream host. The second
// shows the cost of a new connection to a host the proxy has seen.
func firstContact(ctx context.Context, c *client, hosts []string) (first, again []time.Duration, err error) {
	once := func(host string) (time.Duration, error) {
		tr := c.transport(clientOptions{})
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		t := time.Now()
		if _, err := c.get(ctx, hc, host, "/v1/models"); err != nil {
			return 0, fmt.Errorf("%s: %w", host, err)
		}
		return time.Since(t), nil
	}
	for _, host := range hosts {
		d1, err := once(host)
		if err != nil {
			return nil, nil, err
		}
		d2, err := once(host)
		if err != nil {
			return nil, nil, err
		}
		first = append(first, d1)
		again = append(again, d2)
	}
	return first, again, nil
}

// sseResult is what a set of streamed chat completions found.
type sseResult struct {
	ttfb   []time.Duration // request sent to first event read, per stream
	events int
	total  time.Duration // sum of the events' delays
	worst  time.Duration
}

func (r *sseResult) mean() time.Duration {
	if r.events == 0 {
		return 0
	}
	return r.total / time.Duration(r.events)
}

// stream asks for streams streamed chat completions of events events
// each, paced interval apart by the upstream, one after another on a warm
// keep-alive HTTP/1.1 connection. Each event's delay is the time this
// client read it minus the send time the upstream wrote into it: both
// clocks are this process's.
func stream(ctx context.Context, c *client, streams, events int, interval time.Duration) (*sseResult, error) {
	tr := c.transport(clientOptions{keepAlive: true})
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: time.Minute}
	if _, err := c.get(ctx, hc, apiHost, "/v1/models"); err != nil {
		return nil, fmt.Errorf("warming up: %w", err)
	}

	body := fmt.Sprintf(`{"model":"bench-model","stream":true,"max_tokens":%d,`+
		`"messages":[{"role":"user","content":"Count for me."}]}`, events)
	res := &sseResult{}
	for range streams {
		req, err := c.request(ctx, http.MethodPost, apiHost, "/v1/chat/completions", bytes.NewReader([]byte(body)))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set(intervalHeader, interval.String())
		if err := readStream(hc, req, events, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func readStream(hc *http.Client, req *http.Request, events int, res *sseResult) error {
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("chat completions: %s", resp.Status)
	}
	br := bufio.NewReaderSize(resp.Body, 4096)
	got := 0
	for {
		line, err := br.ReadSlice('\n')
		now := time.Now()
		if err != nil {
			return fmt.Errorf("stream ended after %d of %d events: %w", got, events, err)
		}
		data, ok := bytes.CutPrefix(line, []byte("data: "))
		if !ok {
			continue
		}
		if got == 0 {
			res.ttfb = append(res.ttfb, now.Sub(start))
		}
		if bytes.HasPrefix(data, []byte("[DONE]")) {
			break
		}
		sent, err := sentTime(data)
		if err != nil {
			return err
		}
		delay := now.Sub(sent)
		res.total += delay
		res.worst = max(res.worst, delay)
		res.events++
		got++
	}
	io.Copy(io.Discard, resp.Body)
	if got != events {
		return fmt.Errorf("stream carried %d events, want %d", got, events)
	}
	return nil
}

// sentTime reads the send timestamp out of one event's JSON without
// decoding all of it.
func sentTime(data []byte) (time.Time, error) {
	_, rest, ok := bytes.Cut(data, []byte(sentField))
	if !ok {
		return time.Time{}, fmt.Errorf("event without a send time: %.80s", data)
	}
	end := bytes.IndexAny(rest, ",}")
	if end < 0 {
		return time.Time{}, fmt.Errorf("event with a malformed send time: %.80s", data)
	}
	ns, err := strconv.ParseInt(string(rest[:end]), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("event with a malformed send time: %w", err)
	}
	return time.Unix(0, ns), nil
}

// bulk moves n bytes in one request on a warm keep-alive HTTP/1.1
// connection, downloading (GET /bulk) or uploading (POST /bulk), and
// returns MiB per second.
func bulk(ctx context.Context, c *client, n int64, upload bool) (float64, error) {
	tr := c.transport(clientOptions{keepAlive: true})
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	if _, err := c.get(ctx, hc, apiHost, "/v1/models"); err != nil {
		return 0, fmt.Errorf("warming up: %w", err)
	}

	var req *http.Request
	var err error
	if upload {
		req, err = c.request(ctx, http.MethodPost, apiHost, "/bulk", &patternReader{left: n})
		if err == nil {
			req.ContentLength = n
			req.Header.Set("Content-Type", "application/octet-stream")
		}
	} else {
		req, err = c.request(ctx, http.MethodGet, apiHost, "/bulk?bytes="+strconv.FormatInt(n, 10), nil)
	}
	if err != nil {
		return 0, err
	}

	start := time.Now()
	res, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s /bulk: %s", req.Method, res.Status)
	}
	if upload {
		var answer struct {
			Received int64 `json:"received"`
		}
		if err := json.NewDecoder(res.Body).Decode(&answer); err != nil {
			return 0, err
		}
		if answer.Received != n {
			return 0, fmt.Errorf("upstream received %d bytes of %d", answer.Received, n)
		}
	} else {
		got, err := io.CopyBuffer(io.Discard, res.Body, make([]byte, 256<<10))
		if err != nil {
			return 0, err
		}
		if got != n {
			return 0, fmt.Errorf("downloaded %d bytes of %d", got, n)
		}
	}
	elapsed := time.Since(start)
	return float64(n) / (1 << 20) / elapsed.Seconds(), nil
}

// patternReader yields n bytes of bulkBlock, over and over.
type patternReader struct {
	left int64
	off  int
}

func (r *patternReader) Read(b []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	n := copy(b[:min(int64(len(b)), r.left)], bulkBlock[r.off:])
	r.off = (r.off + n) % len(bulkBlock)
	r.left -= int64(n)
	return n, nil
}

// idleResult is what holding many idle connections through a proxy
// showed of its process.
type idleResult struct {
	want, opened int
	openTime     time.Duration
	before, held procStats // before opening, and with all of them open
	after        procStats // once they were closed and the proxy settled
	err          error
}

// rssPerConn is the growth of resident memory per held connection, in KiB.
func (r *idleResult) rssPerConn() float64 {
	if r.opened == 0 {
		return 0
	}
	return float64(r.held.rssKiB-r.before.rssKiB) / float64(r.opened)
}

// holdIdle opens n connections through the subject, each with one
// request answered, holds them idle, and closes them, reading the proxy
// process's memory, threads and descriptors before, during and after.
func holdIdle(ctx context.Context, c *client, n, concurrency int, limit time.Duration) *idleResult {
	pid := c.s.pid()
	res := &idleResult{want: n}
	sessions := tls.NewLRUClientSessionCache(16)

	// A first batch, closed again, lets the proxy grow its pools of
	// upstream connections and buffers to what this concurrency needs,
	// so that they do not count against the idle connections.
	warm, _ := openMany(ctx, c, sessions, concurrency, concurrency, limit)
	closeAll(warm)
	settle(pid, 3*time.Second)
	res.before = readProcStats(pid, c.up.port)

	start := time.Now()
	conns, err := openMany(ctx, c, sessions, n, concurrency, limit)
	res.openTime = time.Since(start)
	res.opened = len(conns)
	res.err = err
	time.Sleep(500 * time.Millisecond)
	res.held = readProcStats(pid, c.up.port)

	closeAll(conns)
	settle(pid, 10*time.Second)
	res.after = readProcStats(pid, c.up.port)
	return res
}

// openMany opens up to n idle connections with concurrency workers, and
// stops at the first failure or when limit has passed. After a failure
// the connections already being opened are let finish, so that the proxy
// sees no handshake cut short by the benchmark.
func openMany(ctx context.Context, c *client, sessions tls.ClientSessionCache,
	n, concurrency int, limit time.Duration) ([]net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var (
		mu       sync.Mutex
		conns    = make([]net.Conn, 0, n)
		firstErr error
		failed   atomic.Bool
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	for range concurrency {
		wg.Go(func() {
			for !failed.Load() && next.Add(1) <= int64(n) && ctx.Err() == nil {
				conn, err := c.idleConn(ctx, sessions)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					failed.Store(true)
					return
				}
				conns = append(conns, conn)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr == nil && len(conns) < n {
		firstErr = fmt.Errorf("opened %d of %d connections in %v", len(conns), n, limit)
	}
	return conns, firstErr
}

func closeAll(conns []net.Conn) {
	var wg sync.WaitGroup
	for chunk := range slices.Chunk(conns, 256) {
		wg.Go(func() {
			for _, conn := range chunk {
				conn.Close()
			}
		})
	}
	wg.Wait()
}

// settle waits until the process's descriptor count has not changed for
// half a second, or until limit.
func settle(pid int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	last, stableSince := countFDs(pid), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		fds := countFDs(pid)
		if fds != last {
			last, stableSince = fds, time.Now()
			continue
		}
		if time.Since(stableSince) >= 500*time.Millisecond {
			return
		}
	}
}

package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
)

// h1Response writes one response on an HTTP/1.1 connection inside a
// tunnel: headers with the framing the client can read (Content-Length
// when the handler set one, chunked otherwise, and to the close for an
// HTTP/1.0 client), informational responses before them, and trailers
// after a chunked body.
type h1Response struct {
	c      *h1Conn
	req    *http.Request
	body   *h1Body
	header http.Header

	// Informational responses are relayed from the upstream leg's own
	// goroutines, and 100 Continue is sent from whichever goroutine first
	// reads the body; mu orders them with the final header.
	mu             sync.Mutex
	wroteHeader    bool
	expectContinue bool // the client waits for 100 Continue before its body
	continueSent   bool

	hijacked   bool
	status     int
	noBody     bool  // HEAD, or a status that has no body
	chunked    bool  // the body goes out in chunks
	closeAfter bool  // the connection ends with this response
	length     int64 // the declared Content-Length, or -1
	written    int64
	trailers   []string
	err        error // the first write that failed; nothing more is sent
	scratch    [64]byte
}

var errHijackedLate = errors.New("the connection cannot be taken over once the response has started")

func (w *h1Response) Header() http.Header { return w.header }

func (w *h1Response) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wroteHeader || w.hijacked {
		return
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.informational(code)
		return
	}
	w.wroteHeader = true
	w.writeHeader(code)
}

// informational sends a 1xx response with the header as it stands. A 100
// Continue goes out at most once, and only to a client that asked for it.
func (w *h1Response) informational(code int) {
	if !w.req.ProtoAtLeast(1, 1) {
		return // HTTP/1.0 has no informational responses
	}
	if code == http.StatusContinue {
		if !w.expectContinue || w.continueSent {
			return
		}
		w.continueSent = true
	}
	if w.err != nil {
		return
	}
	bw := w.c.writer()
	bw.WriteString(statusLine(code))
	writeFields(bw, w.header)
	bw.WriteString("\r\n")
	w.fail(bw.Flush())
}

// sendContinue tells a client that waits for it to send its body, unless
// the final response has gone out already.
func (w *h1Response) sendContinue() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.wroteHeader || w.hijacked || w.continueSent || w.err != nil {
		return
	}
	w.continueSent = true
	bw := w.c.writer()
	bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	w.fail(bw.Flush())
}

func (w *h1Response) writeHeader(code int) {
	h, req := w.header, w.req
	w.status, w.length = code, -1
	switch {
	case code == http.StatusNoContent || code == http.StatusNotModified || code == http.StatusSwitchingProtocols:
		w.noBody = true
	case req.Method == http.MethodHead:
		w.noBody = true
	}
	delete(h, "Transfer-Encoding")
	if code == http.StatusNoContent || code == http.StatusSwitchingProtocols {
		delete(h, "Content-Length")
	}
	if cl := h["Content-Length"]; len(cl) == 1 {
		if n, err := strconv.ParseInt(cl[0], 10, 64); err == nil && n >= 0 {
			w.length = n
		} else {
			delete(h, "Content-Length")
		}
	} else if len(cl) > 1 {
		delete(h, "Content-Length")
	}
	if !w.noBody && w.length < 0 {
		if req.ProtoAtLeast(1, 1) {
			w.chunked = true
		} else {
			w.closeAfter = true // the end of the body is the end of the connection
		}
	}
	// A client told to wait for 100 Continue that never came may send its
	// body or not; the connection cannot be read on after that.
	if req.Close || w.c.s.closing.Load() || code == http.StatusSwitchingProtocols ||
		w.expectContinue && !w.continueSent {
		w.closeAfter = true
	}
	if w.chunked {
		for _, v := range h["Trailer"] {
			for name := range strings.SplitSeq(v, ",") {
				if name = strings.TrimSpace(name); name != "" {
					w.trailers = append(w.trailers, textproto.CanonicalMIMEHeaderKey(name))
				}
			}
		}
	}

	bw := w.c.writer()
	bw.WriteString(statusLine(code))
	delete(h, "Connection")
	writeFields(bw, h)
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.Write(time.Now().UTC().AppendFormat(w.scratch[:0], http.TimeFormat))
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	switch {
	case w.closeAfter:
		bw.WriteString("Connection: close\r\n")
	case !req.ProtoAtLeast(1, 1):
		bw.WriteString("Connection: keep-alive\r\n")
	}
	bw.WriteString("\r\n")
}

// writeFields writes the header lines of h, leaving out names that are not
// valid and trailers.
func writeFields(bw *bufio.Writer, h http.Header) {
	for k, vv := range h {
		if !strings.HasPrefix(k, http.TrailerPrefix) {
			writeField(bw, k, vv)
		}
	}
}

// writeTrailers writes the trailers named in the header and those set
// with http.TrailerPrefix.
func writeTrailers(bw *bufio.Writer, h http.Header, names []string) {
	for _, k := range names {
		writeField(bw, k, h[k])
	}
	for k, vv := range h {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			writeField(bw, name, vv)
		}
	}
}

// writeField writes one header line per value, turning line breaks in a
// value into spaces. A name that is not valid is left out.
func writeField(bw *bufio.Writer, k string, vv []string) {
	if !httpguts.ValidHeaderFieldName(k) {
		return
	}
	for _, v := range vv {
		if strings.ContainsAny(v, "\r\n") {
			v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
		}
		bw.WriteString(k)
		bw.WriteString(": ")
		bw.WriteString(strings.TrimSpace(v))
		bw.WriteString("\r\n")
	}
}

func (w *h1Response) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return 0, w.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.noBody {
		if w.req.Method == http.MethodHead && w.status != http.StatusNoContent && w.status != http.StatusNotModified {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.length >= 0 && w.written+int64(len(p)) > w.length {
		return 0, http.ErrContentLength
	}
	bw := w.c.bw
	if w.chunked {
		bw.Write(strconv.AppendInt(w.scratch[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	if w.chunked && err == nil {
		_, err = bw.WriteString("\r\n")
	}
	w.written += int64(n)
	w.fail(err)
	return n, err
}

func (w *h1Response) fail(err error) {
	if err != nil && w.err == nil {
		w.err = err
		w.closeAfter = true
	}
}

// FlushError sends what is buffered; http.ResponseController finds it.
func (w *h1Response) FlushError() error {
	if w.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err != nil {
		return w.err
	}
	w.fail(w.c.bw.Flush())
	return w.err
}

func (w *h1Response) Flush() { w.FlushError() }

// EnableFullDuplex is what http.ResponseController asks for; this writer
// never closes the request body when the response starts, so there is
// nothing to change.
func (w *h1Response) EnableFullDuplex() error { return nil }

// Hijack hands the connection over, for a protocol switch. The reader
// returned holds whatever the client sent beyond the request.
func (w *h1Response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.hijacked:
		return nil, nil, http.ErrHijacked
	case w.wroteHeader:
		return nil, nil, errHijackedLate
	}
	w.hijacked = true
	c := w.c
	c.cr.unwatch()
	rw := bufio.NewReadWriter(c.br, c.writer())
	c.br, c.bw, c.hijacked = nil, nil, true
	return c.rwc, rw, nil
}

// finish ends the response and reports whether the connection can carry
// another request.
func (w *h1Response) finish() bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.err == nil {
		bw := w.c.bw
		switch {
		case w.chunked:
			bw.WriteString("0\r\n")
			writeTrailers(bw, w.header, w.trailers)
			bw.WriteString("\r\n")
		case w.length >= 0 && w.written < w.length && !w.noBody:
			w.closeAfter = true // the client waits for bytes that will not come
		}
		w.fail(bw.Flush())
	}
	if w.closeAfter {
		w.body.Close()
		return false
	}
	// What the handler left of the request body stands between this
	// request and the next.
	if w.body.ended() {
		return true
	}
	c := w.c
	c.rwc.SetReadDeadline(time.Now().Add(c.s.p.cfg.ReadHeaderTimeout))
	keep := w.body.drain()
	c.rwc.SetReadDeadline(time.Time{})
	c.unread = !keep
	return keep
}

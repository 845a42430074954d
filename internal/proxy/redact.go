package proxy

import (
	"bytes"
	"io"
	"net/http"
	"strings"
)

// redactResponse keeps the credential just injected from coming back to
// the client, should the upstream echo it (a debugging endpoint, an error
// page that quotes the request). forms are the ways the credential went on
// the wire (provider.Auth.WireForms). Header values holding one are
// masked, the body is passed through a redactor, and the trailers are
// masked once the body has been read. Each mask has its form's length, so
// Content-Length stays right.
//
// A request with an injected credential asks for an uncompressed answer
// (see newReverseProxy). A body the upstream compresses all the same is
// not inspected: the secret would have to be found inside the compressed
// stream. Nor is the stream after a 101 Switching Protocols: only its
// headers are masked.
func redactResponse(res *http.Response, forms []string) {
	maskHeader(res.Header, forms)
	if res.StatusCode == http.StatusSwitchingProtocols {
		return
	}
	if res.Body != nil && res.Body != http.NoBody {
		r := &redactor{body: res.Body, trailer: res.Trailer, forms: forms, buf: bufferPool{}.Get()[:0]}
		for _, f := range forms {
			r.needles = append(r.needles, []byte(f))
			r.longest = max(r.longest, len(f))
		}
		res.Body = r
	}
}

// maskHeader replaces every occurrence of each form in h's values with
// asterisks.
func maskHeader(h http.Header, forms []string) {
	for _, values := range h {
		for i, v := range values {
			for _, f := range forms {
				if strings.Contains(v, f) {
					v = strings.ReplaceAll(v, f, strings.Repeat("*", len(f)))
				}
			}
			values[i] = v
		}
	}
}

// redactor replaces every occurrence of its needles in a stream with
// asterisks. It holds back only a tail that could be the start of a
// needle, so a stream of events is not delayed: an SSE event ends in "\n",
// which no secret starts with.
type redactor struct {
	body    io.ReadCloser
	trailer http.Header // masked when the body ends
	forms   []string
	needles [][]byte
	longest int
	buf     []byte // backing array for held
	held    []byte // bytes read but not yet returned
	ready   int    // how many of held are safe to return
	err     error
}

func (r *redactor) Read(p []byte) (int, error) {
	if len(r.held) == 0 && r.err == nil && len(p) >= 2*r.longest {
		if n, err := r.readDirect(p); n > 0 || err != nil {
			return n, err
		}
	}
	for r.ready == 0 {
		if r.err != nil {
			if len(r.held) > 0 { // the stream ended: nothing more can match
				r.ready = len(r.held)
				break
			}
			return 0, r.err
		}
		if len(r.held) == 0 {
			r.held = r.buf[:0]
		} else if len(r.held) == cap(r.held) {
			r.held = append(r.held, 0)[:len(r.held)]
		}
		n, err := r.body.Read(r.held[len(r.held):cap(r.held)])
		r.held = r.held[:len(r.held)+n]
		r.noteErr(err)
		r.mask(r.held)
		r.ready = len(r.held) - r.tail(r.held)
	}
	n := copy(p, r.held[:r.ready])
	r.held = r.held[n:]
	r.ready -= n
	return n, nil
}

// readDirect reads into p itself when nothing is held back, which spares
// copying every byte once more: the common case. A tail that could begin
// a needle is moved to held. It returns 0 and no error when it has
// nothing to return yet.
func (r *redactor) readDirect(p []byte) (int, error) {
	n, err := r.body.Read(p)
	r.noteErr(err)
	r.mask(p[:n])
	if keep := r.tail(p[:n]); keep > 0 {
		r.held = append(r.buf[:0], p[n-keep:n]...)
		n -= keep
	}
	if n == 0 && len(r.held) == 0 && r.err != nil {
		return 0, r.err
	}
	return n, nil
}

// noteErr keeps the error that ended the body. The transport fills in the
// trailers as the body ends, and the reverse proxy copies them only after
// this read, so they are masked now.
func (r *redactor) noteErr(err error) {
	if err != nil {
		r.err = err
		maskHeader(r.trailer, r.forms)
	}
}

// mask replaces every complete occurrence of a needle in b.
func (r *redactor) mask(b []byte) {
	for _, needle := range r.needles {
		for i := 0; ; {
			j := bytes.Index(b[i:], needle)
			if j < 0 {
				break
			}
			for k := range len(needle) {
				b[i+j+k] = '*'
			}
			i += j + len(needle)
		}
	}
}

// tail is the length of the longest end of b that is the start of a
// needle, to be held back until more of the stream shows whether it is
// one; nothing is held once the stream has ended.
func (r *redactor) tail(b []byte) int {
	if r.err != nil {
		return 0
	}
	for k := min(r.longest-1, len(b)); k > 0; k-- {
		for _, needle := range r.needles {
			if k < len(needle) && bytes.HasSuffix(b, needle[:k]) {
				return k
			}
		}
	}
	return 0
}

// Close closes the body and returns the buffer to the pool, unless a
// Read outgrew it.
func (r *redactor) Close() error {
	if r.buf != nil {
		bufferPool{}.Put(r.buf[:cap(r.buf)])
		r.buf, r.held = nil, nil
	}
	return r.body.Close()
}

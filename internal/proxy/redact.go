package proxy

import (
	"bytes"
	"io"
	"net/http"
	"strings"
)

// redactResponse keeps the credential just injected from coming back to
// the client, should the upstream echo it (a debugging endpoint, an error
// page that quotes the request). Header values holding it are masked, and
// the body is passed through a redactor. The mask has the secret's length,
// so Content-Length stays right.
//
// A body the upstream compressed is not inspected: the secret would have
// to be found inside the compressed stream. cordon sends the client's own
// Accept-Encoding, so such an echo reaches the client compressed.
func redactResponse(res *http.Response, secret string) {
	mask := strings.Repeat("*", len(secret))
	for _, values := range res.Header {
		for i, v := range values {
			if strings.Contains(v, secret) {
				values[i] = strings.ReplaceAll(v, secret, mask)
			}
		}
	}
	if res.Body != nil && res.Body != http.NoBody {
		res.Body = &redactor{body: res.Body, secret: []byte(secret), mask: []byte(mask),
			buf: bufferPool{}.Get()[:0]}
	}
}

// redactor replaces every occurrence of secret in a stream with mask. It
// holds back only a tail that could be the start of the secret, so a
// stream of events is not delayed: an SSE event ends in "\n", which no
// secret starts with.
type redactor struct {
	body   io.ReadCloser
	secret []byte
	mask   []byte
	buf    []byte // backing array for held
	held   []byte // bytes read but not yet returned
	ready  int    // how many of held are safe to return
	err    error
}

func (r *redactor) Read(p []byte) (int, error) {
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
		r.err = err
		r.scan()
	}
	n := copy(p, r.held[:r.ready])
	r.held = r.held[n:]
	r.ready -= n
	return n, nil
}

// scan masks complete occurrences in held and marks as ready everything
// but the longest tail that is a prefix of the secret.
func (r *redactor) scan() {
	for i := 0; ; {
		j := bytes.Index(r.held[i:], r.secret)
		if j < 0 {
			break
		}
		copy(r.held[i+j:], r.mask)
		i += j + len(r.mask)
	}
	keep := 0
	for k := min(len(r.secret)-1, len(r.held)); k > 0; k-- {
		if bytes.HasSuffix(r.held, r.secret[:k]) {
			keep = k
			break
		}
	}
	r.ready = len(r.held) - keep
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

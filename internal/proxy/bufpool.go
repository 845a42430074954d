package proxy

import "sync"

// bufferPool lends the reverse proxy its copy buffers, so streaming a body
// costs no allocation per request.
type bufferPool struct{}

const copyBufferSize = 32 << 10

// buffers holds *[]byte rather than []byte so that Put does not allocate
// a slice header; the pointers themselves are recycled through holders.
var (
	buffers = sync.Pool{New: func() any {
		b := make([]byte, copyBufferSize)
		return &b
	}}
	holders = sync.Pool{New: func() any { return new([]byte) }}
)

func (bufferPool) Get() []byte {
	p := buffers.Get().(*[]byte)
	b := *p
	*p = nil
	holders.Put(p)
	return b
}

func (bufferPool) Put(b []byte) {
	if cap(b) != copyBufferSize {
		return
	}
	p := holders.Get().(*[]byte)
	*p = b[:copyBufferSize]
	buffers.Put(p)
}

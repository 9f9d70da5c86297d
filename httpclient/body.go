package httpclient

import (
	"io"
	"net/http"
	"sync/atomic"

	"github.com/beaconsd/beacon/balancer"
)

// respond makes resp end ep's request (ep.Done) when its body is done: at
// once when there is no body, else at the body's end of file, first read
// error or Close, whichever comes first, exactly once.
func respond(resp *http.Response, ep balancer.Picked) *http.Response {
	if resp.Body == nil || resp.Body == http.NoBody {
		ep.Done()
		return resp
	}
	if rw, ok := resp.Body.(io.ReadWriteCloser); ok { // 101 Switching Protocols
		resp.Body = &writableBody{body{rc: rw, ep: ep}}
		return resp
	}
	resp.Body = &body{rc: resp.Body, ep: ep}
	return resp
}

// body calls its pick's Done once, when the response is over.
type body struct {
	rc   io.ReadCloser
	ep   balancer.Picked
	done atomic.Bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil {
		b.finish()
	}
	return n, err
}

func (b *body) Close() error {
	err := b.rc.Close()
	b.finish()
	return err
}

func (b *body) finish() {
	if !b.done.Swap(true) {
		b.ep.Done()
	}
}

type writableBody struct{ body }

func (b *writableBody) Write(p []byte) (int, error) { return b.rc.(io.Writer).Write(p) }

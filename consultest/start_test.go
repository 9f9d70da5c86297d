package consultest

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestStartOutsideATest(t *testing.T) {
	s, stop, err := Start()
	if err != nil {
		abort(t, err) // no binary: a skip, as NewServer's
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(s.URL() + "/v1/status/leader")
	if err != nil {
		t.Fatalf("GET leader: %v", err)
	}
	resp.Body.Close()
	stop()
	stop() // a second stop does nothing
	if resp, err := c.Get(s.URL() + "/v1/status/leader"); err == nil {
		resp.Body.Close()
		t.Errorf("agent still answers after stop()")
	}
}

func TestStartWithoutBinary(t *testing.T) {
	noBinary(t)
	s, stop, err := Start()
	if !errors.Is(err, ErrNoBinary) || s != nil || stop != nil {
		t.Errorf("Start() without a binary = %v, %v; want ErrNoBinary and no server", s, err)
	}
}

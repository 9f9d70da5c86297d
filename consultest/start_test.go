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
		t.Fatalf("Start() = %v", err)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(s.URL() + "/v1/status/leader")
	if err != nil {
		t.Fatalf("GET leader: %v", err)
	}
	resp.Body.Close()
	stop()
	if resp, err := c.Get(s.URL() + "/v1/status/leader"); err == nil {
		resp.Body.Close()
		t.Errorf("agent still answers after stop()")
	}
}

func TestStartWithoutBinary(t *testing.T) {
	t.Setenv("CONSUL_BIN", "/nonexistent/consul")
	s, stop, err := Start()
	if !errors.Is(err, ErrNoBinary) || s != nil || stop != nil {
		t.Errorf("Start() without a binary = %v, %v; want ErrNoBinary and no server", s, err)
	}
}

package testutil

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

func TestClosedAddrRefusedAndHeld(t *testing.T) {
	addr := ClosedAddr(t)
	_, err := net.DialTimeout("tcp", addr, time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v, want refused", addr, err)
	}
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Fatalf("listen on %s succeeded; the port is not held", addr)
	}
}

package testutil

import (
	"net"
	"strconv"
	"syscall"
	"testing"
)

// ClosedAddr returns a loopback host:port nothing listens on, so a
// connection to it is refused at once: an agent or instance that is down.
//
// The port stays bound (without listening, and without SO_REUSEADDR) until
// the test ends. A port merely closed goes back to the kernel's ephemeral
// pool, and a Consul agent started by a package testing beside this one can
// take it: its RPC or Serf listener accepts the connection and never answers
// HTTP, and the "refused at once" the test relies on becomes a hang.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind 127.0.0.1:0: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}

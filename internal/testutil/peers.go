package testutil

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// PeersOf returns the remote IPs of the ESTABLISHED TCP connections whose
// local end is addr ("ip:port", IPv4), read from the kernel's table
// (/proc/net/tcp): for a listening agent's address, the source addresses
// the agent sees its clients connect from. It fails where there is no
// /proc/net/tcp (not Linux).
func PeersOf(addr string) ([]string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Is4() {
		return nil, fmt.Errorf("PeersOf(%q): want an IPv4 ip:port", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, err
	}
	a := ip.As4()
	// The kernel prints the address as a little-endian 32-bit word.
	want := fmt.Sprintf("%02X%02X%02X%02X:%04X", a[3], a[2], a[1], a[0], p)
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[1] != want || fields[3] != "01" {
			continue
		}
		h, _, _ := strings.Cut(fields[2], ":")
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != 4 {
			continue
		}
		out = append(out, netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]}).String())
	}
	return out, sc.Err()
}

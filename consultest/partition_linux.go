package consultest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// tablePrefix starts the name of every nftables table consultest adds,
// followed by the test binary's pid and a sequence number, so that tables
// left by a test binary that was killed can be told from live ones.
const tablePrefix = "consultest_"

var tableSeq atomic.Int64

func newTableName() string {
	return fmt.Sprintf("%s%d_%d", tablePrefix, os.Getpid(), tableSeq.Add(1))
}

// nft runs the nft command with script on its standard input; the error
// carries what it printed.
func nft(script string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("nft -f - <<<%q: %w: %s", strings.TrimSpace(script), err, bytes.TrimSpace(out))
	}
	return nil
}

func canPartition() error {
	if _, err := exec.LookPath("nft"); err != nil {
		return fmt.Errorf("%w: no nft command (apt-get install nftables): %v", ErrNoPartition, err)
	}
	name := newTableName()
	if err := nft("add table ip " + name); err != nil {
		return fmt.Errorf("%w: %v", ErrNoPartition, err)
	}
	if err := nft("delete table ip " + name); err != nil {
		return fmt.Errorf("%w: %v", ErrNoPartition, err)
	}
	return nil
}

// addPartition adds a table whose rules drop, on the output hook (every
// loopback packet passes it once), what goes between the addresses in and
// the addresses out, either way, and the TCP that unbound sockets
// (127.0.0.1) send to, or receive from, the serf WAN addresses wan. It
// returns the table's name.
func addPartition(in, out, wan []string) (string, error) {
	if err := canPartition(); err != nil {
		return "", err
	}
	removeStaleTables()
	var wanElems []string
	for _, a := range wan {
		host, port, ok := strings.Cut(a, ":")
		if !ok {
			return "", fmt.Errorf("serf WAN address %q is not ip:port", a)
		}
		wanElems = append(wanElems, host+" . "+port)
	}
	name := newTableName()
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s {\n", name)
	fmt.Fprintf(&b, "\tset in { type ipv4_addr; elements = { %s } }\n", strings.Join(in, ", "))
	fmt.Fprintf(&b, "\tset out { type ipv4_addr; elements = { %s } }\n", strings.Join(out, ", "))
	fmt.Fprintf(&b, "\tset wan { type ipv4_addr . inet_service; elements = { %s } }\n", strings.Join(wanElems, ", "))
	b.WriteString("\tchain output {\n\t\ttype filter hook output priority filter; policy accept;\n")
	b.WriteString("\t\tip saddr @in ip daddr @out drop\n")
	b.WriteString("\t\tip saddr @out ip daddr @in drop\n")
	b.WriteString("\t\tip saddr 127.0.0.1 ip daddr . tcp dport @wan drop\n")
	b.WriteString("\t\tip daddr 127.0.0.1 ip saddr . tcp sport @wan drop\n")
	b.WriteString("\t}\n}\n")
	if err := nft(b.String()); err != nil {
		return "", err
	}
	return name, nil
}

func removePartition(table string) error {
	return nft("delete table ip " + table)
}

// removeStaleTables deletes the tables of test binaries that no longer
// run (killed before their cleanup), best effort: their rules name
// addresses nobody uses any more, but they should not pile up.
func removeStaleTables() {
	out, err := exec.Command("nft", "list", "tables", "ip").Output()
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		name, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "table ip "+tablePrefix)
		if !ok {
			continue
		}
		pidStr, _, _ := strings.Cut(name, "_")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = removePartition(tablePrefix + name)
		}
	}
}

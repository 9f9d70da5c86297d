// Package testutil holds the small pieces several packages' tests share:
// a buffer that processes and loggers may write while a test reads it, a
// command built once per test run, an address nothing listens on, and the
// one polling wait (Eventually) for conditions that have no channel to
// wait on.
package testutil

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Buffer is a bytes.Buffer safe to write from other goroutines (a process
// pipe, a logger) while the test reads it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Binary is the command in the test's working directory, built with the
// race detector at the first Path and removed by Remove (from TestMain).
type Binary struct {
	Name string
	// Dir is the package to build, relative to the test's working
	// directory; "" is the test's own package.
	Dir string

	once sync.Once
	path string
	err  error
}

// Path builds the command once per test run and returns its path.
func (b *Binary) Path(t testing.TB) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", b.Name+"-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, b.Name)
		cmd := exec.Command("go", "build", "-race", "-o", b.path, ".")
		cmd.Dir = b.Dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// Remove deletes what Path built, if anything.
func (b *Binary) Remove() {
	if b.path != "" {
		os.RemoveAll(filepath.Dir(b.path))
	}
}

package consultest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Start starts a dev agent as NewServer does, outside a test: for Example
// functions, benchmarks harnesses and demos. stop kills the agent and
// removes its data; call it exactly once. Without a consul binary it
// returns an error wrapping ErrNoBinary.
func Start(opts ...Option) (s *Server, stop func(), err error) {
	sh := &shim{}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(shimAbort); !ok {
				panic(r)
			}
			sh.stop()
			s, stop, err = nil, nil, sh.err
		}
	}()
	s = newServer(sh, opts...)
	return s, sh.stop, nil
}

// ErrNoBinary: no consul binary was found (see BinaryPath).
var ErrNoBinary = errors.New("consultest: no consul binary: set CONSUL_BIN, put consul on PATH, or run `make consul`")

type shimAbort struct{}

// shim stands in for a testing.TB: Fatalf and Skipf end newServer through
// a panic that Start recovers; cleanups run at stop, last first.
type shim struct {
	mu       sync.Mutex
	cleanups []func()
	err      error
	once     sync.Once
}

func (*shim) Helper()             {}
func (*shim) Logf(string, ...any) {}

// Errorf: only cleanup reports errors this way (a data dir it could not
// remove); outside a test there is nobody to tell.
func (*shim) Errorf(string, ...any) {}
func (s *shim) Failed() bool        { return s.err != nil }
func (s *shim) Cleanup(f func()) {
	s.mu.Lock()
	s.cleanups = append(s.cleanups, f)
	s.mu.Unlock()
}

func (s *shim) Fatalf(format string, args ...any) {
	s.err = fmt.Errorf(format, args...)
	panic(shimAbort{})
}

func (s *shim) Skipf(format string, args ...any) {
	s.err = fmt.Errorf("%w (%s)", ErrNoBinary, fmt.Sprintf(format, args...))
	panic(shimAbort{})
}

func (s *shim) stop() {
	s.once.Do(func() {
		s.mu.Lock()
		fs := slices.Clone(s.cleanups)
		s.mu.Unlock()
		for i := len(fs) - 1; i >= 0; i-- {
			fs[i]()
		}
	})
}

package consultest

import "sync"

// Start starts a dev agent as NewServer does, outside a test: for
// harnesses, benchmarks and demos. stop kills the agent and removes its
// data; it is safe to call more than once. Without a consul binary the
// error matches ErrNoBinary.
func Start(opts ...Option) (s *Server, stop func(), err error) {
	s, err = newServer(nil, opts...)
	if err != nil {
		return nil, nil, err
	}
	var once sync.Once
	return s, func() { once.Do(func() { s.close() }) }, nil
}

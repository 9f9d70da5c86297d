//go:build !linux

package consultest

import "fmt"

func canPartition() error {
	return fmt.Errorf("%w: nftables rules are Linux only", ErrNoPartition)
}

func addPartition(in, out, wan []string) (string, error) { return "", canPartition() }

func removePartition(string) error { return nil }

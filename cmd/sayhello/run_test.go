package main

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-port", "0"},
		{"-port", "70000"},
		{"-backend", "grpc"},
		{"-meta", "novalue"},
		{"-nosuchflag"},
		{"extra"},
		{"-name", "not_a_dns_label", "-consul", "127.0.0.1:1"},
		{"-meta", "consul-x=1", "-consul", "127.0.0.1:1"},
	} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, &stdout, &stderr)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("run(%q) = %v, want a usage error (exit 2)", args, err)
		}
	}
}

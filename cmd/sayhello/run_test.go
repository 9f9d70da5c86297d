package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
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
		{"-name", "bad\x01name", "-consul", "127.0.0.1:1"},
		{"-name", "", "-consul", "127.0.0.1:1"},
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

// TestListenWhereAdvertised: with -advertise and no -listen, sayhello
// listens on the advertised address only; with neither, on every
// interface (advertising the outbound IP).
func TestListenWhereAdvertised(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-port", "10086", "-advertise", "127.0.0.1"}, "127.0.0.1:10086"},
		{[]string{"-port", "10086", "-advertise", "::1"}, "[::1]:10086"},
		{[]string{"-port", "10086"}, ":10086"},
		{[]string{"-port", "10086", "-advertise", "127.0.0.1", "-listen", "127.0.0.2:9"}, "127.0.0.2:9"},
	} {
		o, err := parseFlags(tc.args, io.Discard)
		if err != nil || o.listen != tc.want {
			t.Errorf("parseFlags(%q).listen = %q, %v; want %q", tc.args, o.listen, err, tc.want)
		}
	}
}

func TestFlagValues(t *testing.T) {
	var stderr bytes.Buffer
	o, err := parseFlags([]string{"-tags", " a, b,,c ", "-tags", "d", "-meta", "k=v=w,x", "-meta", "e="}, &stderr)
	if err != nil {
		t.Fatalf("parseFlags = %v, want no error", err)
	}
	if want := []string{"a", "b", "c", "d"}; !slices.Equal(o.tags, want) {
		t.Errorf("-tags = %q, want %q", o.tags, want)
	}
	if want := map[string]string{"k": "v=w,x", "e": ""}; !maps.Equal(o.meta, want) {
		t.Errorf("-meta = %q, want %q", o.meta, want)
	}
}

// FuzzFlagValues: -tags and -meta values split into what was written, and
// nothing else.
func FuzzFlagValues(f *testing.F) {
	for _, s := range []string{"a,b", " a , ,b,", "", ",", "k=v", "k=", "=v", "k", "k=v=w,x", "\x00=\xff", "é=é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tags := splitTags(s)
		for _, tag := range tags {
			if tag == "" || tag != strings.TrimSpace(tag) || strings.Contains(tag, ",") {
				t.Fatalf("splitTags(%q) = %q: %q is empty, untrimmed or holds a comma", s, tags, tag)
			}
		}
		if again := splitTags(strings.Join(tags, ",")); !slices.Equal(again, tags) {
			t.Fatalf("splitTags(%q) = %q, but its join splits into %q", s, tags, again)
		}
		k, v, err := parseMetaPair(s)
		if err != nil {
			if k != "" || v != "" || strings.Index(s, "=") > 0 {
				t.Fatalf("parseMetaPair(%q) = %q, %q, %v; want key=value accepted", s, k, v, err)
			}
			return
		}
		if k == "" || strings.Contains(k, "=") || k+"="+v != s {
			t.Fatalf("parseMetaPair(%q) = %q, %q; want the first '=' to split it", s, k, v)
		}
	})
}

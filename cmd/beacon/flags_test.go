package main

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestListFlag(t *testing.T) {
	var l listFlag
	for _, s := range []string{" a, b,,c ", "d", ""} {
		if err := l.Set(s); err != nil {
			t.Fatalf("listFlag.Set(%q) = %v", s, err)
		}
	}
	if want := []string{"a", "b", "c", "d"}; !slices.Equal(l, want) {
		t.Errorf("listFlag after Set = %q, want %q", l, want)
	}
}

// FuzzFlagValues: -tag lists split into trimmed, non-empty pieces that
// split the same again; -meta pairs have keys without ',' or '=', and a
// map whose values hold no comma reads back from its String.
func FuzzFlagValues(f *testing.F) {
	for _, s := range []string{"a,b", " a , ,b,", "", ",", "k=v", "a=1,desc=x,y,b=", "=v", "k", "k=v=w", "\x00=\xff", "a=1,a=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var l listFlag
		if err := l.Set(s); err != nil {
			t.Fatalf("listFlag.Set(%q) = %v, want no error", s, err)
		}
		for _, p := range l {
			if p == "" || p != strings.TrimSpace(p) || strings.Contains(p, ",") {
				t.Fatalf("listFlag.Set(%q) = %q: %q is empty, untrimmed or holds a comma", s, l, p)
			}
		}
		var again listFlag
		if _ = again.Set(l.String()); !slices.Equal(again, l) {
			t.Fatalf("listFlag.Set(%q) = %q, but its String reads back as %q", s, l, again)
		}

		// Set fails exactly when its first piece is not key=value.
		m := metaFlag{}
		first, _, _ := strings.Cut(s, ",")
		err := m.Set(s)
		if (err != nil) != (strings.Index(first, "=") <= 0) {
			t.Fatalf("metaFlag.Set(%q) = %v; its first piece is %q", s, err, first)
		}
		if err != nil {
			return
		}
		hasComma := false
		for k, v := range m {
			if k == "" || strings.ContainsAny(k, ",=") {
				t.Fatalf("metaFlag.Set(%q) = %q: key %q is empty or holds ',' or '='", s, m, k)
			}
			hasComma = hasComma || strings.Contains(v, ",")
		}
		if !hasComma {
			back := metaFlag{}
			if err := back.Set(m.String()); err != nil || !maps.Equal(back, m) {
				t.Fatalf("metaFlag.Set(%q) = %q, but its String %q reads back as %q, %v", s, m, m.String(), back, err)
			}
		}
	})
}

package main

import (
	"bytes"
	"errors"
	"fmt"
)

// The generated part of docs/performance.md lies between these two lines;
// everything outside them is left byte for byte.
const (
	beginMarker = "<!-- bench-scale:begin -->"
	endMarker   = "<!-- bench-scale:end -->"
)

// ErrMarkers says the document does not hold exactly one well-ordered
// pair of markers: the tool does not guess where to write.
var ErrMarkers = errors.New("plot: markers")

// Rewrite replaces what lies between the begin and end markers of doc
// with section (which should end in a newline). Rewriting with the same
// section again gives the same bytes.
func Rewrite(doc []byte, section string) ([]byte, error) {
	b := bytes.Index(doc, []byte(beginMarker))
	e := bytes.Index(doc, []byte(endMarker))
	switch {
	case b < 0 || e < 0:
		return nil, fmt.Errorf("%w: want a line %q and, below it, a line %q", ErrMarkers, beginMarker, endMarker)
	case bytes.Count(doc, []byte(beginMarker)) != 1 || bytes.Count(doc, []byte(endMarker)) != 1:
		return nil, fmt.Errorf("%w: %q and %q must each appear once", ErrMarkers, beginMarker, endMarker)
	case e < b:
		return nil, fmt.Errorf("%w: %q comes before %q", ErrMarkers, endMarker, beginMarker)
	}
	start := b + len(beginMarker)
	var out bytes.Buffer
	out.Grow(len(doc) + len(section))
	out.Write(doc[:start])
	out.WriteString("\n\n")
	out.WriteString(section)
	if len(section) > 0 && section[len(section)-1] != '\n' {
		out.WriteByte('\n')
	}
	out.WriteString("\n")
	out.Write(doc[e:])
	return out.Bytes(), nil
}

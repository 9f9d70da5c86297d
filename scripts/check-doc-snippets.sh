#!/usr/bin/env bash
# Builds and vets every complete Go program (a ```go block that declares a
# package) in README.md and docs/*.md against this checkout, so the
# snippets a newcomer copies compile as given. Fragments without a package
# clause are skipped and listed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

n=0
for doc in README.md docs/*.md; do
	# Each block into its own directory: blk-<doc>-<index>/main.go.
	awk -v dir="$tmp" -v doc="$(basename "$doc" .md)" '
		/^```go$/ { inblock = 1; i++; f = sprintf("%s/blk-%s-%d.go", dir, doc, i); next }
		/^```/ && inblock { inblock = 0; close(f); next }
		inblock { print > f }
	' "$doc"
done
for f in "$tmp"/blk-*.go; do
	[ -e "$f" ] || continue
	name=$(basename "$f" .go)
	if ! grep -q '^package ' "$f"; then
		echo "skipped (a fragment, no package clause): $name"
		continue
	fi
	mkdir -p "$tmp/mod/$name"
	mv "$f" "$tmp/mod/$name/main.go"
	n=$((n + 1))
done
if [ "$n" -eq 0 ]; then
	echo "no complete Go program found"
	exit 0
fi
cat >"$tmp/mod/go.mod" <<EOF
module example.com/docsnippets

go 1.26

require github.com/beaconsd/beacon v0.0.0

replace github.com/beaconsd/beacon => $root
EOF
cp go.sum "$tmp/mod/go.sum"
cd "$tmp/mod"
GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "not gofmt-formatted: $unformatted"
	exit 1
fi
go vet ./...
echo "ok: $n Go programs from README.md and docs/ build and vet"

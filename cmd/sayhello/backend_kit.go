//go:build !nokit

package main

import (
	"github.com/beaconsd/beacon/consulkit"
)

func init() {
	backends["kit"] = consulkit.Backend
}

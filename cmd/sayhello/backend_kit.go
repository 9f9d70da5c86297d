//go:build !nokit

package main

import (
	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulkit"
)

func init() {
	backends["kit"] = func(c consul.Config) (beacon.Registry, error) { return consulkit.New(c) }
}

//go:build !nohttp

package main

import (
	"github.com/beaconsd/beacon"
	"github.com/beaconsd/beacon/consul"
	"github.com/beaconsd/beacon/consulhttp"
)

func init() {
	backends["http"] = func(c consul.Config) (beacon.Registry, error) { return consulhttp.New(c) }
}

//go:build !nohttp

package main

import (
	"github.com/beaconsd/beacon/consulhttp"
)

func init() {
	backends["http"] = consulhttp.Backend
}

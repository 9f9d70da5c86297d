module github.com/beaconsd/beacon

go 1.26

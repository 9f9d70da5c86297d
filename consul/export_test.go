package consul

// FromLookup exposes fromLookup so external tests can build a Config from a
// map instead of the process environment.
var FromLookup = fromLookup

// ParseTokenFile exposes parseTokenFile to the fuzz target.
var ParseTokenFile = parseTokenFile

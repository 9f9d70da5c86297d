package httpclient

// ClosedAddr lends the package's tests' helper to its external tests.
var ClosedAddr = closedAddr

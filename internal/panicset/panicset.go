// Package panicset lets package discovery build a balancer.Set whose
// weights ignore the instances' health, for a snapshot published in panic
// (see discovery.WithPanicThreshold), without a public API in package
// balancer: in panic, critical instances are published on purpose and
// must be picked as if they passed, while Instance.Health, which users
// read, keeps telling the truth.
//
// Package balancer fills NewSet in at init; it is typed any because
// balancer imports this package.
package panicset

// NewSet is a func(insts []beacon.Instance, prev *balancer.Set)
// *balancer.Set: balancer.NewSet with every instance weighted as if it
// passed (Weights.Passing), kept by Set.Without.
var NewSet any

// Package sdk is luaq's Go SDK: a Client that enqueues tasks and inspects
// queues, and a Worker that leases tasks and runs handlers.
//
// The SDK never decides queue state itself. Every state change is one call of
// a script of the bundle (package scripts), made through package loader; the
// SDK only picks keys, passes arguments, runs handlers, and keeps leases alive.
package sdk

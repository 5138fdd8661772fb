// Package chaos holds luaq's fault-injection and endurance tests; it has no
// code outside its tests.
//
//   - TestChaos runs worker and producer processes (the test binary
//     re-executed) against a redis-server with appendonly yes and appendfsync
//     always, SIGKILLs workers and kill -9s the server (restarted on the same
//     port and directory) while tasks flow, then checks that no task was lost
//     and that every task whose handler ran more than once owes it to a kill.
//   - TestFencingSIGSTOP freezes a worker process past its lease and checks
//     that, once thawed, it cannot touch the task another worker now holds.
//   - TestSoak runs steady traffic with random failures through in-process
//     workers and checks that Redis memory, the key count and the test
//     process's goroutines come back to their baseline.
//
// Durations are bounded for CI and can be raised with LUAQ_CHAOS_DURATION
// (the active phase of TestChaos, default 75s) and LUAQ_SOAK_DURATION (default
// 30s; e.g. 10m for a long soak). Run with -v to see the figures (each test
// ends with a SUMMARY line); LUAQ_CHAOS_SEED replays a chaos schedule, and
// LUAQ_SOAK_MEMDEBUG=1 logs MEMORY STATS and MEMORY USAGE per key at both of
// the soak's measurements.
package chaos

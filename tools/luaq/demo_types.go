package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/luaq/luaq/sdk"
)

// The demo's task types: their share of the mix, retry policy, planned
// failures, predicted outcome and handler.

// Task types of the demo.
const (
	typeEmail   = "email:send"   // always succeeds
	typeImage   = "image:resize" // fails its first 1-2 runs, then succeeds
	typeReport  = "report:build" // always fails; archived after its retries
	typeWebhook = "webhook:post" // a few are rejected at once with ErrSkipRetry
)

// demoPayload is the JSON payload of a demo task. The seeded plan decides
// the failure mix up front, so handlers are deterministic.
type demoPayload struct {
	N       int  `json:"n"`               // index of the task in the plan
	SleepUS int  `json:"sleep_us"`        // simulated work per run, µs
	Fails   int  `json:"fails,omitempty"` // image:resize: runs that fail first
	Skip    bool `json:"skip,omitempty"`  // webhook:post: reject with ErrSkipRetry
}

// demoType describes one task type: its share of the mix, its retry policy,
// how the plan fills its payload, what outcome the plan predicts, and its
// handler.
type demoType struct {
	name     string
	share    int // percent of the tasks
	maxRetry int
	backoff  sdk.BackoffFunc
	// plan fills the type's failure fields of p; nil when there are none.
	plan func(rng *rand.Rand, p *demoPayload)
	// expect predicts how many runs of a task fail and are retried, and
	// whether the task ends archived.
	expect func(p demoPayload) (retried int, archived bool)
	// handle is the type's handler, called after the simulated work.
	handle func(ctx context.Context, t *sdk.Task, p demoPayload) error
}

// demoTypes returns the demo's task types. Their shares add up to 100.
func demoTypes() []demoType {
	return []demoType{
		{
			name: typeEmail, share: 40, maxRetry: demoDefaultMaxRetry,
			backoff: sdk.ExponentialBackoff(10*time.Millisecond, 50*time.Millisecond),
			expect:  func(demoPayload) (int, bool) { return 0, false },
			handle:  func(context.Context, *sdk.Task, demoPayload) error { return nil },
		},
		{
			name: typeImage, share: 27, maxRetry: demoDefaultMaxRetry,
			backoff: sdk.ExponentialBackoff(10*time.Millisecond, 40*time.Millisecond),
			plan:    func(rng *rand.Rand, p *demoPayload) { p.Fails = 1 + rng.IntN(2) },
			expect:  func(p demoPayload) (int, bool) { return p.Fails, false },
			handle: func(_ context.Context, t *sdk.Task, p demoPayload) error {
				if t.Retried < p.Fails {
					return fmt.Errorf("image %d: resize backend busy (run %d of %d failing)", p.N, t.Retried+1, p.Fails)
				}
				return nil
			},
		},
		{
			name: typeReport, share: 8, maxRetry: demoReportMaxRetry,
			backoff: sdk.ExponentialBackoff(20*time.Millisecond, 50*time.Millisecond),
			expect:  func(demoPayload) (int, bool) { return demoReportMaxRetry, true },
			handle: func(_ context.Context, _ *sdk.Task, p demoPayload) error {
				return fmt.Errorf("report %d: upstream data source unavailable", p.N)
			},
		},
		{
			name: typeWebhook, share: 25, maxRetry: demoDefaultMaxRetry,
			backoff: sdk.ExponentialBackoff(10*time.Millisecond, 50*time.Millisecond),
			plan:    func(rng *rand.Rand, p *demoPayload) { p.Skip = rng.IntN(100) < demoWebhookSkipPct },
			expect:  func(p demoPayload) (int, bool) { return 0, p.Skip },
			handle: func(_ context.Context, _ *sdk.Task, p demoPayload) error {
				if p.Skip {
					return fmt.Errorf("webhook %d: endpoint answered 410 Gone: %w", p.N, sdk.ErrSkipRetry)
				}
				return nil
			},
		},
	}
}

package sdk

import (
	"math/rand/v2"
	"time"
)

// BackoffFunc returns how long to wait before retrying a task whose run
// failed. retried counts the earlier failed runs (0 on the first failure).
type BackoffFunc func(retried int, err error, t *Task) time.Duration

// ExponentialBackoff returns a BackoffFunc that waits base * 2^retried, capped
// at max, with "equal jitter": a random duration between half that and all of
// it, so workers that failed together do not retry together.
func ExponentialBackoff(base, max time.Duration) BackoffFunc {
	return func(retried int, _ error, _ *Task) time.Duration {
		d := base
		for i := 0; i < retried && d < max; i++ {
			d *= 2
		}
		if d > max {
			d = max
		}
		if d <= 1 {
			return d
		}
		half := d / 2
		return half + rand.N(d-half)
	}
}

// DefaultBackoff is the backoff of a Worker whose config sets none:
// 1s doubling per retry up to 10 minutes, with jitter.
func DefaultBackoff() BackoffFunc { return ExponentialBackoff(time.Second, 10*time.Minute) }

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

type sysResult struct {
	Value   float64            `json:"value"`
	Tasks   int                `json:"tasks,omitempty"`
	Seconds float64            `json:"seconds,omitempty"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
	Stats   map[string]cmdStat `json:"commandstats,omitempty"`
	// CPU seconds over the measured part: Redis's main thread, and this
	// process (producers, workers and harness of the system under test).
	RedisCPU  float64 `json:"redis_main_thread_cpu_s,omitempty"`
	ClientCPU float64 `json:"bench_process_cpu_s,omitempty"`
	Note      string  `json:"note,omitempty"`
	Err       string  `json:"error,omitempty"`
}

type scenarioResult struct {
	Name  string     `json:"name"`
	Luaq  *sysResult `json:"luaq,omitempty"`
	Asynq *sysResult `json:"asynq,omitempty"`
}

type ceilingResult struct {
	Command     string  `json:"command"`
	Requests    int     `json:"requests"`
	Clients     int     `json:"clients"`
	CallsPerSec float64 `json:"evalsha_per_s"`
	Err         string  `json:"error,omitempty"`
}

// row is one line of the table.
type row struct {
	Scenario string   `json:"scenario"`
	Unit     string   `json:"unit"`
	Luaq     *float64 `json:"luaq"`
	Asynq    *float64 `json:"asynq"`
	Ratio    *float64 `json:"ratio"` // luaq / asynq unless Target says otherwise
	Target   string   `json:"target"`
	Met      *bool    `json:"met"`
	Note     string   `json:"note,omitempty"`
	// LuaqAtLeast / AsynqAtLeast mark a value that is only a lower bound
	// (a wait that timed out).
	LuaqAtLeast  bool `json:"luaq_at_least,omitempty"`
	AsynqAtLeast bool `json:"asynq_at_least,omitempty"`
}

type report struct {
	Command      string    `json:"command"`
	Scale        float64   `json:"scale"`
	Started      time.Time `json:"started"`
	WallSeconds  float64   `json:"wall_seconds"`
	GoVersion    string    `json:"go_version"`
	CPUs         int       `json:"cpus"`
	RedisVersion string    `json:"redis_version"`
	AsynqVersion string    `json:"asynq_version"`
	// Load averages (/proc/loadavg) at the start and the end: the machine
	// is shared, so other load skews absolute numbers (both systems alike).
	LoadStart    string            `json:"loadavg_start,omitempty"`
	LoadEnd      string            `json:"loadavg_end,omitempty"`
	Scenarios    []*scenarioResult `json:"scenarios"`
	Ceiling      *ceilingResult    `json:"ceiling,omitempty"`
	LuaqE2EShare *float64          `json:"luaq_e2e_share_of_ceiling,omitempty"`
	Rows         []row             `json:"rows"`
}

func (rep *report) scenario(name string) *scenarioResult {
	for _, s := range rep.Scenarios {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func fp(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func val(r *sysResult, metric string) *float64 {
	if r == nil || r.Err != "" {
		return nil
	}
	if metric == "" {
		return fp(r.Value)
	}
	v, ok := r.Metrics[metric]
	if !ok {
		return nil
	}
	return fp(v)
}

func ratio(a, b *float64) *float64 {
	if a == nil || b == nil || *b == 0 {
		return nil
	}
	return fp(*a / *b)
}

func check(v *float64, ok func(float64) bool) *bool {
	if v == nil {
		return nil
	}
	m := ok(*v)
	return &m
}

// buildRows turns the scenario results into the table.
func (rep *report) buildRows() {
	rep.Rows = nil
	add := func(r row) { rep.Rows = append(rep.Rows, r) }
	throughput := func(name, label string, target float64) {
		s := rep.scenario(name)
		if s == nil {
			return
		}
		l, a := val(s.Luaq, ""), val(s.Asynq, "")
		rt := ratio(l, a)
		add(row{Scenario: label, Unit: "tasks/s", Luaq: l, Asynq: a, Ratio: rt,
			Target: fmt.Sprintf(">= %.1fx asynq", target), Met: check(rt, func(x float64) bool { return x >= target })})
	}
	throughput("enqueue", "enqueue (8 producers)", 1.5)
	throughput("batch", "enqueue batch 100 vs asynq single", 5)
	throughput("drain", "drain (32 handlers)", 4)
	throughput("e2e", "end-to-end (8 prod + 32 handlers)", 3)
	lat := func(name, label, metric string, limit float64) {
		s := rep.scenario(name)
		if s == nil {
			return
		}
		l, a := val(s.Luaq, metric), val(s.Asynq, metric)
		r := row{Scenario: label, Unit: "ms", Luaq: l, Asynq: a, Ratio: ratio(l, a)}
		if limit > 0 {
			r.Target = fmt.Sprintf("luaq <= %g ms", limit)
			r.Met = check(l, func(x float64) bool { return x <= limit })
		}
		add(r)
	}
	lat("idle", "idle latency p50", "p50_ms", 0)
	lat("idle", "idle latency p99", "p99_ms", 2)
	lat("idle", "idle latency max", "max_ms", 0)
	lat("scheduled", "scheduled lateness p50", "p50_ms", 0)
	lat("scheduled", "scheduled lateness p99", "p99_ms", 10)
	if s := rep.scenario("memory"); s != nil {
		l, a := val(s.Luaq, ""), val(s.Asynq, "")
		rt := ratio(l, a)
		add(row{Scenario: "memory per pending task", Unit: "bytes", Luaq: l, Asynq: a, Ratio: rt,
			Target: "<= 0.4x asynq", Met: check(rt, func(x float64) bool { return x <= 0.4 })})
	}
	if s := rep.scenario("scaling"); s != nil && s.Luaq != nil {
		small, large := s.Luaq.Metrics["pending_small"], s.Luaq.Metrics["pending_large"]
		add(row{Scenario: fmt.Sprintf("dequeue+complete @%s pending", human(small)), Unit: "us/task",
			Luaq: val(s.Luaq, "us_per_task_small")})
		rt := val(s.Luaq, "")
		add(row{Scenario: fmt.Sprintf("dequeue+complete @%s pending", human(large)), Unit: "us/task",
			Luaq: val(s.Luaq, "us_per_task_large"), Ratio: rt,
			Target: fmt.Sprintf("%s/%s <= 1.3", human(large), human(small)), Met: check(rt, func(x float64) bool { return x <= 1.3 }),
			Note: "ratio is luaq large/small"})
	}
	if s := rep.scenario("recovery"); s != nil {
		l, a := val(s.Luaq, ""), val(s.Asynq, "")
		r := row{Scenario: "recovery after SIGKILL", Unit: "s", Luaq: l, Asynq: a, Ratio: ratio(l, a),
			Target: "luaq <= 10 s", Met: check(l, func(x float64) bool { return x <= 10 })}
		if s.Luaq != nil && s.Luaq.Metrics["timed_out"] == 1 {
			r.Met, r.LuaqAtLeast = new(bool), true
			r.Note = "luaq " + s.Luaq.Note
		}
		if s.Asynq != nil && s.Asynq.Metrics["timed_out"] == 1 {
			r.AsynqAtLeast = true
			r.Note = strings.TrimSpace(r.Note + " asynq " + s.Asynq.Note)
		}
		add(r)
	}
	if c := rep.Ceiling; c != nil && c.Err == "" {
		if s := rep.scenario("e2e"); s != nil {
			rep.LuaqE2EShare = ratio(val(s.Luaq, "evalsha_per_s"), fp(c.CallsPerSec))
		}
	}
}

func human(n float64) string {
	switch {
	case n >= 1e6 && math.Mod(n, 1e6) == 0:
		return fmt.Sprintf("%gM", n/1e6)
	case n >= 1e3 && math.Mod(n, 1e3) == 0:
		return fmt.Sprintf("%gk", n/1e3)
	}
	return fmt.Sprintf("%g", n)
}

func num(v *float64) string {
	if v == nil {
		return "-"
	}
	x := *v
	switch a := math.Abs(x); {
	case a >= 1000:
		return fmt.Sprintf("%.0f", x)
	case a >= 100:
		return fmt.Sprintf("%.1f", x)
	case a >= 1:
		return fmt.Sprintf("%.2f", x)
	case a > 0 && a < 0.01:
		return fmt.Sprintf("%.2g", x)
	default:
		return fmt.Sprintf("%.3f", x)
	}
}

// printTable writes the table, the ceiling and a commandstats digest.
func (rep *report) printTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tunit\tluaq\tasynq\tratio (luaq/asynq)\ttarget\tmet?")
	for _, r := range rep.Rows {
		ratio := "-"
		if r.Ratio != nil {
			ratio = num(r.Ratio) + "x"
			if r.AsynqAtLeast && !r.LuaqAtLeast {
				ratio = "<" + ratio
			}
		}
		lv, av := num(r.Luaq), num(r.Asynq)
		if r.LuaqAtLeast {
			lv = ">" + lv
		}
		if r.AsynqAtLeast {
			av = ">" + av
		}
		met := "-"
		if r.Met != nil {
			met = map[bool]string{true: "met", false: "MISSED"}[*r.Met]
		}
		target := r.Target
		if target == "" {
			target = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Scenario, r.Unit, lv, av, ratio, target, met)
	}
	tw.Flush()
	for _, r := range rep.Rows {
		if r.Note != "" {
			fmt.Fprintf(w, "note: %s: %s\n", r.Scenario, r.Note)
		}
	}
	for _, s := range rep.Scenarios {
		for _, r := range []*sysResult{s.Luaq, s.Asynq} {
			if r != nil && r.Err != "" {
				fmt.Fprintf(w, "error: %s: %s\n", s.Name, r.Err)
			}
		}
	}
	if c := rep.Ceiling; c != nil {
		if c.Err != "" {
			fmt.Fprintf(w, "\nserver ceiling: error: %s\n", c.Err)
		} else {
			fmt.Fprintf(w, "\nserver ceiling: %s -> %.0f EVALSHA/s\n", c.Command, c.CallsPerSec)
			if s := rep.scenario("e2e"); s != nil {
				l, a := val(s.Luaq, "evalsha_per_s"), val(s.Asynq, "evalsha_per_s")
				if l != nil && rep.LuaqE2EShare != nil {
					fmt.Fprintf(w, "luaq end-to-end: %.0f EVALSHA/s = %.0f%% of the ceiling", *l, 100**rep.LuaqE2EShare)
					if a != nil {
						fmt.Fprintf(w, " (asynq end-to-end: %.0f EVALSHA/s, %.0f commands/s)", *a, s.Asynq.Metrics["commands_per_s"])
					}
					fmt.Fprintln(w)
				}
			}
		}
	}
	// Commands per task and server time per task for the throughput runs.
	fmt.Fprintln(w, "\nwhere the time goes (timed part only; commandstats count commands inside scripts too):")
	for _, name := range []string{"enqueue", "batch", "drain", "e2e"} {
		s := rep.scenario(name)
		if s == nil {
			continue
		}
		for _, sys := range []struct {
			n string
			r *sysResult
		}{{"luaq", s.Luaq}, {"asynq", s.Asynq}} {
			if sys.r == nil || sys.r.Err != "" || sys.r.Tasks == 0 {
				continue
			}
			fmt.Fprintf(w, "  %-8s %-5s redis main thread %.1f us CPU/task (%.0f%% busy), bench process %.1f us CPU/task; %s\n",
				name, sys.n, 1e6*sys.r.RedisCPU/float64(sys.r.Tasks), 100*sys.r.RedisCPU/sys.r.Seconds,
				1e6*sys.r.ClientCPU/float64(sys.r.Tasks), statDigest(sys.r.Stats, sys.r.Tasks))
		}
	}
}

// direct lists commands a client sends itself rather than a script calling
// them (for the estimate of commands run inside scripts).
var direct = map[string]bool{
	"evalsha": true, "eval": true, "blpop": true, "brpoplpush": true, "hello": true, "client|setinfo": true,
	"subscribe": true, "config|resetstat": true, "info": true, "ping": true, "script|load": true,
}

// statDigest summarises one run's commandstats per task: EVALSHA calls and
// time, and roughly how much of that time the commands inside the scripts
// took (EVALSHA's usec includes them); the rest is the Lua interpreter.
func statDigest(st map[string]cmdStat, tasks int) string {
	per := func(x int64) float64 { return float64(x) / float64(tasks) }
	e := st["evalsha"]
	var inner, innerCalls int64
	type kv struct {
		k string
		v cmdStat
	}
	var top []kv
	for k, v := range st {
		if !direct[k] {
			inner += v.Usec
			innerCalls += v.Calls
			top = append(top, kv{k, v})
		}
	}
	sort.Slice(top, func(i, j int) bool { return top[i].v.Calls > top[j].v.Calls })
	var parts []string
	for i, t := range top {
		if i == 5 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.1f", t.k, per(t.v.Calls)))
	}
	return fmt.Sprintf("EVALSHA %.2f/task, %.1f us/task, of which ~%.1f us in %.1f redis.call commands/task (%s), ~%.1f us Lua",
		per(e.Calls), per(e.Usec), per(inner), per(innerCalls), strings.Join(parts, ", "), per(e.Usec-inner))
}

// readReport loads a report written with --json.
func readReport(path string) (*report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep report
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	rep.buildRows()
	return &rep, nil
}

func (rep *report) writeJSON(path string) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

package main

// The agent's Workload API through go-spiffe: first-response latency, JWT-SVID throughput and
// how long the X.509 context takes to hold a given set of SVIDs.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
)

// clientOptions are every Workload API client's: the X.509 context of thousands of SVIDs is
// far above gRPC's default 4 MiB limit on a received message.
func clientOptions(addr string) []workloadapi.ClientOption {
	return []workloadapi.ClientOption{
		workloadapi.WithAddr(addr),
		workloadapi.WithDialOptions(grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1 << 30))),
	}
}

func needAddr(addr string) error {
	if addr == "" {
		return usageError{"-addr is required"}
	}
	return nil
}

// percentiles prints <name>_p50 and <name>_p99 (milliseconds) of the samples.
func percentiles(name string, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	at := func(q float64) time.Duration { return samples[min(len(samples)-1, int(q*float64(len(samples))))] }
	result(name+"_p50", millis(at(0.50)), "ms")
	result(name+"_p99", millis(at(0.99)), "ms")
	result(name+"_samples", float64(len(samples)), "n")
}

// fetchOnce dials the Workload API, takes the first X509-SVID response and hangs up, as a
// workload starting up does.
func fetchOnce(addr string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	_, err := workloadapi.FetchX509SVID(ctx, clientOptions(addr)...)
	return time.Since(start), err
}

func runFetch(args []string) error {
	fs := flag.NewFlagSet("fetch", flag.ContinueOnError)
	addr := fs.String("addr", "", "Workload API address")
	clients := fs.Int("clients", 1, "concurrent clients per round")
	rounds := fs.Int("rounds", 100, "rounds")
	name := fs.String("name", "fetch", "result name")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := needAddr(*addr); err != nil {
		return err
	}
	var samples []time.Duration
	for r := 0; r < *rounds; r++ {
		got := make([]time.Duration, *clients)
		errs := make([]error, *clients)
		var ready, wg sync.WaitGroup
		gate := make(chan struct{})
		for c := 0; c < *clients; c++ {
			ready.Add(1)
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				ready.Done()
				<-gate
				got[c], errs[c] = fetchOnce(*addr)
			}(c)
		}
		ready.Wait()
		close(gate)
		wg.Wait()
		for c, err := range errs {
			if err != nil {
				return fmt.Errorf("round %d client %d: FetchX509SVID: %w", r, c, err)
			}
		}
		samples = append(samples, got...)
	}
	percentiles(*name, samples)
	return nil
}

func runJWT(args []string) error {
	fs := flag.NewFlagSet("jwt", flag.ContinueOnError)
	addr := fs.String("addr", "", "Workload API address")
	subject := fs.String("subject", "", "SPIFFE ID to ask for")
	clients := fs.Int("clients", 16, "concurrent clients, one connection each")
	dur := fs.Duration("for", 5*time.Second, "how long to run")
	name := fs.String("name", "jwt", "result name")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := needAddr(*addr); err != nil {
		return err
	}
	params := jwtsvid.Params{}
	if *subject != "" {
		id, err := spiffeid.FromString(*subject)
		if err != nil {
			return usageError{fmt.Sprintf("-subject: %v", err)}
		}
		params.Subject = id
	}
	conns := make([]*workloadapi.Client, *clients)
	for c := range conns {
		client, err := workloadapi.New(context.Background(), clientOptions(*addr)...)
		if err != nil {
			return err
		}
		defer client.Close()
		conns[c] = client
	}
	rate, err := perSecond(*clients, *dur, func(ctx context.Context, c, i int) error {
		p := params
		p.Audience = fmt.Sprintf("bench-%d-%d", c, i)
		_, err := conns[c].FetchJWTSVID(ctx, p)
		return err
	})
	if err != nil {
		return fmt.Errorf("FetchJWTSVID: %w", err)
	}
	result(*name+"_rate", rate, "/s")
	return nil
}

// watcher follows the X.509 context and signals each time it changes.
type watcher struct {
	mu      sync.Mutex
	ids     map[string]bool
	lastErr string
	changed chan struct{}
	err     chan error
}

func newWatcher() *watcher {
	return &watcher{changed: make(chan struct{}, 1), err: make(chan error, 1)}
}

func (w *watcher) OnX509ContextUpdate(c *workloadapi.X509Context) {
	ids := make(map[string]bool, len(c.SVIDs))
	for _, s := range c.SVIDs {
		ids[s.ID.String()] = true
	}
	w.mu.Lock()
	w.ids = ids
	w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// OnX509ContextWatchError: "no identity issued" while the agent syncs is expected; the client
// retries by itself. Each new error is shown once.
func (w *watcher) OnX509ContextWatchError(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if msg := err.Error(); msg != w.lastErr {
		w.lastErr = msg
		progress("watch: %s (retrying)", msg)
	}
}

// until waits for the context to satisfy ok, or the deadline.
func (w *watcher) until(deadline time.Time, ok func(ids map[string]bool) bool) error {
	for {
		w.mu.Lock()
		good := w.ids != nil && ok(w.ids)
		have := len(w.ids)
		w.mu.Unlock()
		if good {
			return nil
		}
		select {
		case <-w.changed:
		case err := <-w.err:
			return err
		case <-time.After(time.Until(deadline)):
			return fmt.Errorf("timed out with %d SVIDs in the X.509 context", have)
		}
	}
}

func (w *watcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ids)
}

// watch starts following the X.509 context at addr until ctx ends.
func watch(ctx context.Context, addr string) (*watcher, error) {
	client, err := workloadapi.New(ctx, clientOptions(addr)...)
	if err != nil {
		return nil, err
	}
	w := newWatcher()
	go func() {
		defer client.Close()
		if err := client.WatchX509Context(ctx, w); err != nil && ctx.Err() == nil {
			w.err <- err
		}
	}()
	return w, nil
}

func atLeast(n int) func(map[string]bool) bool {
	return func(ids map[string]bool) bool { return len(ids) >= n }
}

func runWatch(args []string) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	addr := fs.String("addr", "", "Workload API address")
	want := fs.Int("want", 1, "SVIDs to wait for")
	since := fs.Int64("since", 0, "measure from this Unix time in ns")
	timeout := fs.Duration("timeout", 300*time.Second, "give up after this long")
	name := fs.String("name", "sync", "result name")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := needAddr(*addr); err != nil {
		return err
	}
	t0 := origin(*since)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := watch(ctx, *addr)
	if err != nil {
		return err
	}
	if err := w.until(time.Now().Add(*timeout), atLeast(*want)); err != nil {
		return fmt.Errorf("waiting for %d SVIDs: %w", *want, err)
	}
	result(*name+"_s", time.Since(t0).Seconds(), "s")
	return nil
}

// scenario is what burst and propagation share: their flags, a watch of the workload's X.509
// context (holding its first SVIDs) and a connection to the admin API.
type scenario struct {
	addr, socket string
	n            int
	e            entryFlags
	w            *watcher
	conn         *grpc.ClientConn
}

func (s *scenario) register(fs *flag.FlagSet) {
	fs.StringVar(&s.addr, "addr", "", "Workload API address")
	fs.StringVar(&s.socket, "socket", "", "admin API socket")
	fs.IntVar(&s.n, "n", 1000, "entries")
	s.e.register(fs)
}

// start parses args, starts watching (until ctx ends) and dials the admin API.
func (s *scenario) start(ctx context.Context, fs *flag.FlagSet, args []string) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := needAddr(s.addr); err != nil {
		return err
	}
	if err := s.e.check(); err != nil {
		return err
	}
	w, err := watch(ctx, s.addr)
	if err != nil {
		return err
	}
	if err := w.until(time.Now().Add(60*time.Second), atLeast(1)); err != nil {
		return fmt.Errorf("waiting for the workload's first SVIDs: %w", err)
	}
	s.w = w
	s.conn, err = dialAdmin(s.socket)
	return err
}

func (s *scenario) close() {
	if s.conn != nil {
		s.conn.Close()
	}
}

func runBurst(args []string) error {
	fs := flag.NewFlagSet("burst", flag.ContinueOnError)
	var s scenario
	s.register(fs)
	timeout := fs.Duration("timeout", 300*time.Second, "give up after this long")
	name := fs.String("name", "burst", "result name")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer s.close()
	if err := s.start(ctx, fs, args); err != nil {
		return err
	}
	before := s.w.count()
	start := time.Now()
	if err := createEntries(ctx, s.conn, s.e, s.n); err != nil {
		return err
	}
	created := time.Since(start)
	if err := s.w.until(start.Add(*timeout), atLeast(before+s.n)); err != nil {
		return fmt.Errorf("waiting for %d more SVIDs: %w", s.n, err)
	}
	result(*name+"_s", time.Since(start).Seconds(), "s")
	result(*name+"_create_s", created.Seconds(), "s")
	return nil
}

func runPropagation(args []string) error {
	fs := flag.NewFlagSet("propagation", flag.ContinueOnError)
	var s scenario
	s.register(fs)
	name := fs.String("name", "propagation", "result name")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer s.close()
	if err := s.start(ctx, fs, args); err != nil {
		return err
	}
	parent, err := spiffeID(s.e.parent)
	if err != nil {
		return err
	}
	var samples []time.Duration
	for i := 0; i < s.n; i++ {
		one := s.e
		one.prefix = fmt.Sprintf("%s/%d", s.e.prefix, i)
		id := fmt.Sprintf("spiffe://%s/%s/0", parent.TrustDomain, one.prefix)
		start := time.Now()
		if err := createEntries(ctx, s.conn, one, 1); err != nil {
			return err
		}
		has := func(ids map[string]bool) bool { return ids[id] }
		if err := s.w.until(start.Add(120*time.Second), has); err != nil {
			return fmt.Errorf("waiting for %s: %w", id, err)
		}
		samples = append(samples, time.Since(start))
		progress("%s after %s", id, samples[len(samples)-1])
		// Not in step with any sync period the agent may have.
		time.Sleep(time.Duration(100+(i*137)%400) * time.Millisecond)
	}
	percentiles(*name, samples)
	return nil
}

func runProbe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	addr := fs.String("addr", "", "Workload API address")
	stop := fs.String("stop", "", "stop once this file exists")
	name := fs.String("name", "probe", "result name")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := needAddr(*addr); err != nil {
		return err
	}
	if *stop == "" {
		return usageError{"-stop is required"}
	}
	var samples []time.Duration
	for {
		if _, err := os.Stat(*stop); err == nil {
			break
		}
		d, err := fetchOnce(*addr)
		if err != nil {
			return fmt.Errorf("FetchX509SVID: %w", err)
		}
		samples = append(samples, d)
		time.Sleep(5 * time.Millisecond)
	}
	percentiles(*name, samples)
	return nil
}

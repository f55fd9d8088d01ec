// Command loadclient drives a SPIFFE server and agent (signet or SPIRE, the same way) for
// tests/interop/bench.sh: it talks to the server's admin API (SPIRE's spire-api-sdk, over the
// admin Unix socket) and to the agent's Workload API (go-spiffe v2), and prints each figure as
// a line "result <name> <value> <unit>" on stdout. Progress and errors go to stderr; any error
// exits 1 (2 for usage errors).
//
//	loadclient create  -socket S -n N [-batch 500] -parent ID -prefix P -selector type:value
//	loadclient list    -socket S [-page 500]
//	loadclient ready   -socket S [-since NS] [-timeout D]
//	loadclient mint    -socket S [-clients 8] [-for 5s]
//	loadclient fetch   -addr A [-clients 1] [-rounds 100] [-name fetch1]
//	loadclient jwt     -addr A -subject ID [-clients 16] [-for 5s] [-name jwt]
//	loadclient watch   -addr A -want N [-since NS] [-timeout D] [-name sync]
//	loadclient burst   -addr A -socket S -n N -parent ID -prefix P -selector type:value
//	loadclient propagation -addr A -socket S -n N -parent ID -prefix P -selector type:value
//	loadclient probe   -addr A -stop FILE [-name probe]
//
// -since is a Unix time in nanoseconds (date +%s%N) that elapsed times are measured from;
// without it they are measured from the command's start.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

type command struct {
	run  func(args []string) error
	help string
}

var commands = map[string]command{
	"create":      {runCreate, "create N registration entries in batches"},
	"list":        {runList, "list every entry in pages, timed"},
	"ready":       {runReady, "wait until the admin API answers, timed"},
	"mint":        {runMint, "MintX509SVID from several clients, per second"},
	"fetch":       {runFetch, "FetchX509SVID first response on a new connection, percentiles"},
	"jwt":         {runJWT, "FetchJWTSVID with a new audience each time, per second"},
	"watch":       {runWatch, "wait until the X.509 context holds N SVIDs, timed"},
	"burst":       {runBurst, "create N entries for a watching workload, time until all arrive"},
	"propagation": {runPropagation, "entry created -> watching workload has it, percentiles"},
	"probe":       {runProbe, "FetchX509SVID in a loop until a file appears, percentiles"},
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "loadclient: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err := cmd.run(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "loadclient %s: %v\n", os.Args[1], err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadclient <command> [flags]; commands:")
	for name, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-12s %s\n", name, c.help)
	}
}

// result prints one figure for bench.sh.
func result(name string, value float64, unit string) {
	fmt.Printf("result %s %.3f %s\n", name, value, unit)
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadclient: "+format+"\n", args...)
}

// origin returns the instant elapsed times are measured from: -since, or now.
func origin(sinceNS int64) time.Time {
	if sinceNS > 0 {
		return time.Unix(0, sinceNS)
	}
	return time.Now()
}

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// entryFlags are the flags of the commands that create entries.
type entryFlags struct {
	parent   string
	prefix   string
	selector string
	batch    int
}

func (e *entryFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&e.parent, "parent", "", "parent SPIFFE ID of the new entries")
	fs.StringVar(&e.prefix, "prefix", "bench", "path prefix of the new entries' SPIFFE IDs")
	fs.StringVar(&e.selector, "selector", "", "the new entries' selector, type:value")
	fs.IntVar(&e.batch, "batch", 500, "entries per BatchCreateEntry call")
}

func (e *entryFlags) check() error {
	if e.parent == "" || e.selector == "" {
		return usageError{"-parent and -selector are required"}
	}
	if !strings.Contains(e.selector, ":") {
		return usageError{fmt.Sprintf("-selector %q is not type:value", e.selector)}
	}
	if e.batch <= 0 {
		return usageError{"-batch must be positive"}
	}
	return nil
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected arguments %q", fs.Args())}
	}
	return nil
}

// perSecond runs call from `clients` goroutines until `dur` has passed and returns the calls
// completed per second. call gets the goroutine and its call number. The calls have no
// deadline of their own (one would end the last call with DeadlineExceeded): the loops stop
// once `dur` has passed, and any error is a failure.
func perSecond(clients int, dur time.Duration, call func(ctx context.Context, c, i int) error) (float64, error) {
	var done atomic.Int64
	var firstErr error
	var once sync.Once
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(dur)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && time.Now().Before(end); i++ {
				if err := call(ctx, c, i); err != nil {
					if ctx.Err() == nil {
						once.Do(func() { firstErr = err; cancel() })
					}
					return
				}
				done.Add(1)
			}
		}(c)
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(start).Seconds(), firstErr
}

// Command spiffe-check is a Workload API client built on go-spiffe v2, used by the interop
// scenarios to prove that a SPIFFE agent (signet-agent or spire-agent) serves what go-spiffe
// expects. Each subcommand performs one check and exits 0 when it holds; on failure it prints
// "spiffe-check <cmd>: FAIL: <why>" to stderr and exits 1 (2 for usage errors).
//
//	spiffe-check x509  -addr unix:///path -expect spiffe://td/id
//	spiffe-check jwt   -addr unix:///path -audience A -expect spiffe://td/id
//	spiffe-check watch -addr unix:///path -rotations N -timeout D [-expect spiffe://td/id]
//	spiffe-check mtls  -addr unix:///path [-expect spiffe://td/id]
//	spiffe-check xmtls -addr unix:///a -peer-addr unix:///b -server-id ID -client-id ID [-for D]
//	spiffe-check bundle -trust-domain td -file bundle.json [-min-x509 N] [-min-jwt N]
//
// -addr defaults to $SPIFFE_ENDPOINT_SOCKET.
package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/logger"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// usageError marks errors caused by the command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// common holds the flags every subcommand takes.
type common struct {
	addr    string
	expect  string
	timeout time.Duration
	verbose bool
}

func (c *common) register(fs *flag.FlagSet, defaultTimeout time.Duration) {
	fs.StringVar(&c.addr, "addr", os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "Workload API address (unix:///path or tcp://ip:port); default $SPIFFE_ENDPOINT_SOCKET")
	fs.StringVar(&c.expect, "expect", "", "SPIFFE ID the default identity must have")
	fs.DurationVar(&c.timeout, "timeout", defaultTimeout, "give up after this long")
	fs.BoolVar(&c.verbose, "v", false, "log go-spiffe's client debug messages to stderr")
}

// check validates the common flags; requireExpect makes -expect mandatory.
func (c *common) check(requireExpect bool) (spiffeid.ID, error) {
	if c.addr == "" {
		return spiffeid.ID{}, usageError{"-addr is required (or set SPIFFE_ENDPOINT_SOCKET)"}
	}
	if c.timeout <= 0 {
		return spiffeid.ID{}, usageError{"-timeout must be positive"}
	}
	if c.expect == "" {
		if requireExpect {
			return spiffeid.ID{}, usageError{"-expect is required"}
		}
		return spiffeid.ID{}, nil
	}
	id, err := spiffeid.FromString(c.expect)
	if err != nil {
		return spiffeid.ID{}, usageError{fmt.Sprintf("-expect %q is not a SPIFFE ID: %v", c.expect, err)}
	}
	return id, nil
}

func (c *common) clientOptions() []workloadapi.ClientOption {
	opts := []workloadapi.ClientOption{workloadapi.WithAddr(c.addr)}
	if c.verbose {
		opts = append(opts, workloadapi.WithLogger(logger.Writer(os.Stderr)))
	}
	return opts
}

type command struct {
	summary string
	run     func(args []string) error
}

var commands = map[string]command{
	"x509":   {"fetch the X.509 context once; check the default SVID's ID and verify its chain", runX509},
	"jwt":    {"fetch a JWT-SVID; validate it through the agent and locally against the JWT bundles", runJWT},
	"watch":  {"watch the X.509 context until the SVID has rotated N times, verifying every update", runWatch},
	"mtls":   {"mutual TLS handshake over loopback between two users of one X509Source", runMTLS},
	"xmtls":  {"mutual TLS between the workloads of two agents (-addr serves, -peer-addr dials), across trust domains", runCrossMTLS},
	"bundle": {"parse a SPIFFE bundle document with spiffebundle.Parse", runBundleParse},
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: spiffe-check <command> [flags]   (spiffe-check <command> -h for flags)\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(os.Stderr, "  %-6s %s\n", name, commands[name].summary)
	}
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	name := os.Args[1]
	cmd, ok := commands[name]
	if !ok {
		if name == "-h" || name == "--help" || name == "help" {
			usage()
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "spiffe-check: unknown command %q\n", name)
		usage()
		os.Exit(2)
	}
	err := cmd.run(os.Args[2:])
	switch {
	case err == nil:
		fmt.Printf("spiffe-check %s: OK\n", name)
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	default:
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(os.Stderr, "spiffe-check %s: %v\n", name, err)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "spiffe-check %s: FAIL: %v\n", name, err)
		os.Exit(1)
	}
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected arguments: %s", strings.Join(fs.Args(), " "))}
	}
	return nil
}

// describe renders an SVID's identity, serial, validity and chain length.
func describe(svid *x509svid.SVID) string {
	leaf := svid.Certificates[0]
	return fmt.Sprintf("%s serial %s valid %s .. %s (ttl %s, expires in %s), chain of %d",
		svid.ID, leaf.SerialNumber.Text(16),
		leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339),
		leaf.NotAfter.Sub(leaf.NotBefore).Round(time.Second),
		time.Until(leaf.NotAfter).Round(time.Second), len(svid.Certificates))
}

// verifySVID checks an SVID chain against a bundle set with x509svid.Verify, and that the ID the
// verification derives from the leaf is the SVID's (and, if set, the expected one).
func verifySVID(svid *x509svid.SVID, bundles x509bundle.Source, expect spiffeid.ID) error {
	if len(svid.Certificates) == 0 {
		return errors.New("SVID has no certificates")
	}
	id, chains, err := x509svid.Verify(svid.Certificates, bundles)
	if err != nil {
		return fmt.Errorf("SVID %s does not verify against its bundle set: %w", svid.ID, err)
	}
	if id != svid.ID {
		return fmt.Errorf("verified ID %s differs from the SVID's ID %s", id, svid.ID)
	}
	if !expect.IsZero() && id != expect {
		return fmt.Errorf("default SVID is %s, expected %s", id, expect)
	}
	if len(chains) == 0 {
		return errors.New("x509svid.Verify returned no chain")
	}
	return nil
}

func bundleSummary(set *x509bundle.Set) string {
	parts := []string{}
	for _, b := range set.Bundles() {
		parts = append(parts, fmt.Sprintf("%s (%d root(s))", b.TrustDomain(), len(b.X509Authorities())))
	}
	return strings.Join(parts, ", ")
}

// --- x509 ---------------------------------------------------------------------------------------

func runX509(args []string) error {
	var c common
	fs := flag.NewFlagSet("x509", flag.ContinueOnError)
	c.register(fs, 15*time.Second)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	expect, err := c.check(true)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()

	x509ctx, err := workloadapi.FetchX509Context(ctx, c.clientOptions()...)
	if err != nil {
		return fmt.Errorf("FetchX509Context: %w", err)
	}
	if len(x509ctx.SVIDs) == 0 {
		return errors.New("FetchX509Context returned no SVIDs")
	}
	for i, s := range x509ctx.SVIDs {
		fmt.Printf("svid[%d]: %s\n", i, describe(s))
	}
	fmt.Printf("bundles: %s\n", bundleSummary(x509ctx.Bundles))
	svid := x509ctx.DefaultSVID()
	if err := verifySVID(svid, x509ctx.Bundles, expect); err != nil {
		return err
	}
	// Every other SVID served must verify as well.
	for _, s := range x509ctx.SVIDs[1:] {
		if err := verifySVID(s, x509ctx.Bundles, spiffeid.ID{}); err != nil {
			return err
		}
	}
	fmt.Printf("SPIFFE ID: %s\n", svid.ID)
	fmt.Printf("Expires: %s\n", svid.Certificates[0].NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// --- jwt ----------------------------------------------------------------------------------------

func runJWT(args []string) error {
	var c common
	var audience, subject string
	fs := flag.NewFlagSet("jwt", flag.ContinueOnError)
	c.register(fs, 15*time.Second)
	fs.StringVar(&audience, "audience", "", "audience to request and validate (required)")
	fs.StringVar(&subject, "subject", "", "ask for this SPIFFE ID explicitly (default: the agent's default identity)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	expect, err := c.check(true)
	if err != nil {
		return err
	}
	if audience == "" {
		return usageError{"-audience is required"}
	}
	params := jwtsvid.Params{Audience: audience}
	if subject != "" {
		if params.Subject, err = spiffeid.FromString(subject); err != nil {
			return usageError{fmt.Sprintf("-subject %q: %v", subject, err)}
		}
	}
	wrongAudience := "not-" + audience
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	opts := c.clientOptions()

	svid, err := workloadapi.FetchJWTSVID(ctx, params, opts...)
	if err != nil {
		return fmt.Errorf("FetchJWTSVID(audience %q): %w", audience, err)
	}
	token := svid.Marshal()
	fmt.Printf("fetched: %s aud %v expires %s (in %s)\n", svid.ID, svid.Audience,
		svid.Expiry.UTC().Format(time.RFC3339), time.Until(svid.Expiry).Round(time.Second))
	if svid.ID != expect {
		return fmt.Errorf("FetchJWTSVID returned %s, expected %s", svid.ID, expect)
	}
	if !contains(svid.Audience, audience) {
		return fmt.Errorf("JWT-SVID audience %v lacks %q", svid.Audience, audience)
	}

	// The agent validates it for the right audience...
	validated, err := workloadapi.ValidateJWTSVID(ctx, token, audience, opts...)
	if err != nil {
		return fmt.Errorf("ValidateJWTSVID(audience %q) through the agent: %w", audience, err)
	}
	if validated.ID != expect {
		return fmt.Errorf("ValidateJWTSVID returned %s, expected %s", validated.ID, expect)
	}
	fmt.Printf("agent validated it for audience %q: %s\n", audience, validated.ID)
	// ...and refuses it for another.
	if bad, err := workloadapi.ValidateJWTSVID(ctx, token, wrongAudience, opts...); err == nil {
		return fmt.Errorf("ValidateJWTSVID accepted the token for the wrong audience %q (as %s)", wrongAudience, bad.ID)
	} else {
		fmt.Printf("agent refused it for audience %q: %v\n", wrongAudience, err)
	}

	// Locally: the JWT bundles verify the signature.
	bundles, err := workloadapi.FetchJWTBundles(ctx, opts...)
	if err != nil {
		return fmt.Errorf("FetchJWTBundles: %w", err)
	}
	if err := describeJWTBundles(bundles, expect.TrustDomain()); err != nil {
		return err
	}
	local, err := jwtsvid.ParseAndValidate(token, bundles, []string{audience})
	if err != nil {
		return fmt.Errorf("jwtsvid.ParseAndValidate against the fetched JWT bundles: %w", err)
	}
	if local.ID != expect {
		return fmt.Errorf("jwtsvid.ParseAndValidate returned %s, expected %s", local.ID, expect)
	}
	fmt.Printf("verified locally against the JWT bundle: %s\n", local.ID)
	if _, err := jwtsvid.ParseAndValidate(token, bundles, []string{wrongAudience}); err == nil {
		return fmt.Errorf("jwtsvid.ParseAndValidate accepted the wrong audience %q", wrongAudience)
	}
	// A bundle set without the signing key must not verify it (the check above is not vacuous).
	empty := jwtbundle.NewSet(jwtbundle.New(expect.TrustDomain()))
	if _, err := jwtsvid.ParseAndValidate(token, empty, []string{audience}); err == nil {
		return errors.New("jwtsvid.ParseAndValidate accepted the token against an empty JWT bundle")
	}
	fmt.Printf("SPIFFE ID: %s\n", local.ID)
	fmt.Printf("Expires: %s\n", local.Expiry.UTC().Format(time.RFC3339))
	return nil
}

func describeJWTBundles(set *jwtbundle.Set, td spiffeid.TrustDomain) error {
	for _, b := range set.Bundles() {
		kids := make([]string, 0, len(b.JWTAuthorities()))
		for kid := range b.JWTAuthorities() {
			kids = append(kids, kid)
		}
		sort.Strings(kids)
		fmt.Printf("jwt bundle %s: key ids %v\n", b.TrustDomain(), kids)
	}
	b, ok := set.Get(td)
	if !ok {
		return fmt.Errorf("FetchJWTBundles has no bundle for %s", td)
	}
	if len(b.JWTAuthorities()) == 0 {
		return fmt.Errorf("JWT bundle for %s has no keys", td)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// --- watch --------------------------------------------------------------------------------------

// rotationWatcher records every X509Context update and verifies each as it arrives. A rotation is
// a default SVID with a later expiry than the one it replaces; a new serial with the same expiry
// is counted as a re-issue, not a rotation. For each replacement it records how long the previous
// SVID still had to live (negative: the workload held an expired SVID until then).
type rotationWatcher struct {
	expect    spiffeid.ID
	rotations int           // rotations wanted
	minMargin time.Duration // fail if a replacement arrives later than this before expiry
	checkGap  bool          // whether -min-margin was given
	start     time.Time

	mu         sync.Mutex
	current    *x509.Certificate // leaf of the default SVID now held
	seen       map[string]bool   // serials
	rotated    int
	reissued   int
	updates    int
	errs       int
	margins    []time.Duration
	failure    error
	done       chan struct{}
	finishOnce sync.Once
}

func (w *rotationWatcher) finish(err error) {
	w.finishOnce.Do(func() {
		w.failure = err
		close(w.done)
	})
}

func (w *rotationWatcher) OnX509ContextUpdate(x509ctx *workloadapi.X509Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	w.updates++
	elapsed := now.Sub(w.start).Round(100 * time.Millisecond)
	if len(x509ctx.SVIDs) == 0 {
		w.finish(fmt.Errorf("update #%d at +%s has no SVIDs", w.updates, elapsed))
		return
	}
	svid := x509ctx.DefaultSVID()
	if err := verifySVID(svid, x509ctx.Bundles, w.expect); err != nil {
		w.finish(fmt.Errorf("update #%d at +%s: %w", w.updates, elapsed, err))
		return
	}
	leaf := svid.Certificates[0]
	serial := leaf.SerialNumber.Text(16)
	var gapErr error
	what := "same SVID"
	switch {
	case w.current == nil:
		what = "first SVID"
	case w.seen[serial]:
		if leaf.SerialNumber.Cmp(w.current.SerialNumber) != 0 {
			what = "an SVID seen before (went back)"
		}
	default:
		margin := w.current.NotAfter.Sub(now)
		w.margins = append(w.margins, margin)
		when := fmt.Sprintf("%s before the previous one expired", margin.Round(10*time.Millisecond))
		if margin < 0 {
			when = fmt.Sprintf("%s AFTER the previous one expired", (-margin).Round(10*time.Millisecond))
		}
		if leaf.NotAfter.After(w.current.NotAfter) {
			w.rotated++
			what = fmt.Sprintf("ROTATED (#%d), %s", w.rotated, when)
		} else {
			w.reissued++
			what = fmt.Sprintf("RE-ISSUED with no later expiry (#%d), %s", w.reissued, when)
		}
		if w.checkGap && margin < w.minMargin {
			gapErr = fmt.Errorf("update #%d at +%s: new SVID arrived %s; required at least %s before expiry",
				w.updates, elapsed, when, w.minMargin)
		}
	}
	w.seen[serial] = true
	if w.current == nil || leaf.SerialNumber.Cmp(w.current.SerialNumber) != 0 {
		w.current = leaf
	}
	fmt.Printf("+%-6s update #%d: %s; %s; bundles %s\n", elapsed, w.updates, what, describe(svid), bundleSummary(x509ctx.Bundles))
	if gapErr != nil {
		w.finish(gapErr)
	} else if w.rotated >= w.rotations {
		w.finish(nil)
	}
}

func (w *rotationWatcher) OnX509ContextWatchError(err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	w.mu.Lock()
	w.errs++
	w.mu.Unlock()
	fmt.Printf("+%-6s watch error (go-spiffe retries): %v\n", time.Since(w.start).Round(100*time.Millisecond), err)
}

func (w *rotationWatcher) summary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := fmt.Sprintf("%d rotation(s), %d re-issue(s), %d distinct SVID(s) in %d update(s), %d watch error(s)",
		w.rotated, w.reissued, len(w.seen), w.updates, w.errs)
	if len(w.margins) > 0 {
		least := w.margins[0]
		for _, m := range w.margins[1:] {
			if m < least {
				least = m
			}
		}
		s += fmt.Sprintf("; least time left on a replaced SVID: %s", least.Round(10*time.Millisecond))
	}
	return s
}

func runWatch(args []string) error {
	var c common
	var rotations int
	var minMargin time.Duration
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	c.register(fs, 60*time.Second)
	fs.IntVar(&rotations, "rotations", 1, "succeed after N rotations (new default SVID with a later expiry)")
	fs.DurationVar(&minMargin, "min-margin", 0, "if set, fail when a replacement arrives less than this before the previous SVID expires (negative allowed)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	expect, err := c.check(false)
	if err != nil {
		return err
	}
	if rotations < 0 {
		return usageError{"-rotations must be >= 0"}
	}
	checkGap := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "min-margin" {
			checkGap = true
		}
	})
	w := &rotationWatcher{
		expect:    expect,
		rotations: rotations,
		minMargin: minMargin,
		checkGap:  checkGap,
		start:     time.Now(),
		seen:      map[string]bool{},
		done:      make(chan struct{}),
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watchErr := make(chan error, 1)
	go func() { watchErr <- workloadapi.WatchX509Context(ctx, w, c.clientOptions()...) }()

	timer := time.NewTimer(c.timeout)
	defer timer.Stop()
	select {
	case <-w.done:
	case err := <-watchErr:
		// WatchX509Context only returns on cancellation or a non-retryable error (InvalidArgument).
		w.finish(fmt.Errorf("WatchX509Context stopped: %v", err))
	case <-timer.C:
		w.finish(fmt.Errorf("timed out after %s waiting for %d rotation(s)", c.timeout, rotations))
	}
	cancel()
	fmt.Printf("watch: %s, after %s\n", w.summary(), time.Since(w.start).Round(100*time.Millisecond))
	return w.failure
}

// --- mtls ---------------------------------------------------------------------------------------

func runMTLS(args []string) error {
	var c common
	fs := flag.NewFlagSet("mtls", flag.ContinueOnError)
	c.register(fs, 20*time.Second)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	expect, err := c.check(false)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()

	source, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(c.clientOptions()...))
	if err != nil {
		return fmt.Errorf("NewX509Source: %w", err)
	}
	defer source.Close()
	svid, err := source.GetX509SVID()
	if err != nil {
		return fmt.Errorf("X509Source.GetX509SVID: %w", err)
	}
	self := svid.ID
	if !expect.IsZero() && self != expect {
		return fmt.Errorf("X509Source's SVID is %s, expected %s", self, expect)
	}
	fmt.Printf("X509Source SVID: %s\n", describe(svid))

	// Server: accepts any client of the trust domain during the handshake, then checks the
	// client's ID itself. Client: authorizes exactly the server's ID during the handshake.
	listener, err := spiffetls.ListenWithMode(ctx, "tcp", "127.0.0.1:0",
		spiffetls.MTLSServerWithSource(tlsconfig.AuthorizeMemberOf(self.TrustDomain()), source))
	if err != nil {
		return fmt.Errorf("spiffetls.ListenWithMode: %w", err)
	}
	defer listener.Close()
	addr := listener.Addr().String()
	fmt.Printf("mTLS server listening on %s\n", addr)

	serverErr := make(chan error, 1)
	go func() { serverErr <- serveOnce(listener, self) }()
	clientErr := make(chan error, 1)
	go func() { clientErr <- dialOnce(ctx, addr, self, source) }()

	var errs []string
	for pending := 2; pending > 0; pending-- {
		select {
		case err := <-serverErr:
			if err != nil {
				errs = append(errs, "server: "+err.Error())
			}
		case err := <-clientErr:
			if err != nil {
				errs = append(errs, "client: "+err.Error())
			}
		case <-ctx.Done():
			errs = append(errs, fmt.Sprintf("exchange did not finish within %s", c.timeout))
			pending = 0
		}
		if len(errs) > 0 {
			listener.Close() // unblocks the other side
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}

	if err := refusesOtherID(ctx, self, source, source); err != nil {
		return err
	}
	fmt.Printf("SPIFFE ID: %s\n", self)
	return nil
}

// refusesOtherID checks that a client (from clientSource) authorizing only an ID other than
// the server's own (self, from serverSource) refuses the server's handshake.
func refusesOtherID(ctx context.Context, self spiffeid.ID, serverSource, clientSource *workloadapi.X509Source) error {
	other := spiffeid.RequireFromPath(self.TrustDomain(), "/spiffe-check/not-the-server")
	l, err := spiffetls.ListenWithMode(ctx, "tcp", "127.0.0.1:0",
		spiffetls.MTLSServerWithSource(tlsconfig.AuthorizeAny(), serverSource))
	if err != nil {
		return fmt.Errorf("spiffetls.ListenWithMode (second listener): %w", err)
	}
	defer l.Close()
	go drainOne(l)
	conn, err := spiffetls.DialWithMode(ctx, "tcp", l.Addr().String(),
		spiffetls.MTLSClientWithSource(tlsconfig.AuthorizeID(other), clientSource))
	if err == nil {
		conn.Close()
		return fmt.Errorf("a client authorizing only %s completed a handshake with %s", other, self)
	}
	fmt.Printf("client authorizing only %s was refused as expected: %v\n", other, err)
	return nil
}

// serveOnce accepts one connection, checks the client's SPIFFE ID, and answers one line.
func serveOnce(listener net.Listener, want spiffeid.ID) error {
	conn, err := listener.Accept()
	if err != nil {
		return fmt.Errorf("accept: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// Reading completes the handshake (TLS 1.3 finishes it on the first read).
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("handshake/read: %w", err)
	}
	peer, err := spiffetls.PeerIDFromConn(conn)
	if err != nil {
		return fmt.Errorf("client's SPIFFE ID: %w", err)
	}
	if peer != want {
		return fmt.Errorf("client presented %s, expected %s", peer, want)
	}
	fmt.Printf("server: client is %s, said %q\n", peer, strings.TrimSpace(line))
	if _, err := fmt.Fprintf(conn, "hello %s, this is the server\n", peer); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// dialOnce connects, authorizing exactly the server's ID, sends one line and reads the answer.
func dialOnce(ctx context.Context, addr string, want spiffeid.ID, source *workloadapi.X509Source) error {
	conn, err := spiffetls.DialWithMode(ctx, "tcp", addr, spiffetls.MTLSClientWithSource(tlsconfig.AuthorizeID(want), source))
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(conn, "ping from %s\n", want); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	peer, err := spiffetls.PeerIDFromConn(conn)
	if err != nil {
		return fmt.Errorf("server's SPIFFE ID: %w", err)
	}
	if peer != want {
		return fmt.Errorf("server presented %s, expected %s", peer, want)
	}
	fmt.Printf("client: server is %s, replied %q\n", peer, strings.TrimSpace(reply))
	return nil
}

// drainOne accepts one connection and reads until the peer goes away (or 5 s pass).
func drainOne(l net.Listener) {
	conn, err := l.Accept()
	if err != nil {
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.Copy(io.Discard, conn)
}

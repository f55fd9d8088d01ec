package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// --- xmtls --------------------------------------------------------------------------------------

// runCrossMTLS is mTLS between two workloads of (usually) different trust domains, each with
// its own agent: the server side takes its SVID and bundles from -addr, the client side from
// -peer-addr. The server authorizes exactly -client-id, the client exactly -server-id, each
// against the bundles its own agent serves (its own and the federated trust domains').
// With -for D the exchange repeats, one fresh handshake every -every, for D; every failure is
// reported and fails the check.
func runCrossMTLS(args []string) error {
	var c common
	var peerAddr, serverID, clientID string
	var repeatFor, every time.Duration
	fs := flag.NewFlagSet("xmtls", flag.ContinueOnError)
	c.register(fs, 30*time.Second)
	fs.StringVar(&peerAddr, "peer-addr", "", "Workload API address of the client workload")
	fs.StringVar(&serverID, "server-id", "", "SPIFFE ID the server workload (from -addr) must present")
	fs.StringVar(&clientID, "client-id", "", "SPIFFE ID the client workload (from -peer-addr) must present")
	fs.DurationVar(&repeatFor, "for", 0, "keep handshaking for this long (0: once)")
	fs.DurationVar(&every, "every", 500*time.Millisecond, "pause between handshakes with -for")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if _, err := c.check(false); err != nil {
		return err
	}
	if peerAddr == "" {
		return usageError{"-peer-addr is required"}
	}
	sid, err := spiffeid.FromString(serverID)
	if err != nil {
		return usageError{fmt.Sprintf("-server-id %q: %v", serverID, err)}
	}
	cid, err := spiffeid.FromString(clientID)
	if err != nil {
		return usageError{fmt.Sprintf("-client-id %q: %v", clientID, err)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout+repeatFor)
	defer cancel()

	serverSource, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(c.clientOptions()...))
	if err != nil {
		return fmt.Errorf("server NewX509Source: %w", err)
	}
	defer serverSource.Close()
	peer := common{addr: peerAddr, verbose: c.verbose}
	clientSource, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(peer.clientOptions()...))
	if err != nil {
		return fmt.Errorf("client NewX509Source: %w", err)
	}
	defer clientSource.Close()
	for _, s := range []struct {
		name   string
		source *workloadapi.X509Source
		want   spiffeid.ID
	}{{"server", serverSource, sid}, {"client", clientSource, cid}} {
		svid, err := s.source.GetX509SVID()
		if err != nil {
			return fmt.Errorf("%s X509Source.GetX509SVID: %w", s.name, err)
		}
		if svid.ID != s.want {
			return fmt.Errorf("%s workload's SVID is %s, expected %s", s.name, svid.ID, s.want)
		}
		fmt.Printf("%s SVID: %s\n", s.name, describe(svid))
	}

	listener, err := spiffetls.ListenWithMode(ctx, "tcp", "127.0.0.1:0",
		spiffetls.MTLSServerWithSource(tlsconfig.AuthorizeID(cid), serverSource))
	if err != nil {
		return fmt.Errorf("spiffetls.ListenWithMode: %w", err)
	}
	defer listener.Close()
	addr := listener.Addr().String()

	start := time.Now()
	var ok, failed int
	var failures []string
	for {
		if err := exchange(ctx, listener, addr, sid, cid, clientSource); err != nil {
			failed++
			failures = append(failures, fmt.Sprintf("t+%s: %v", time.Since(start).Round(time.Millisecond), err))
			fmt.Printf("handshake FAILED at t+%s: %v\n", time.Since(start).Round(time.Millisecond), err)
		} else {
			ok++
		}
		if time.Since(start) >= repeatFor || ctx.Err() != nil {
			break
		}
		time.Sleep(every)
	}
	fmt.Printf("xmtls: %d handshake(s) ok, %d failed, over %s\n", ok, failed, time.Since(start).Round(time.Millisecond))
	if failed > 0 {
		return errors.New(strings.Join(failures, "; "))
	}

	return refusesOtherID(ctx, sid, serverSource, clientSource)
}

// exchange runs one accepted connection on listener against one dial from the client source.
func exchange(ctx context.Context, listener net.Listener, addr string, sid, cid spiffeid.ID, client *workloadapi.X509Source) error {
	serverErr := make(chan error, 1)
	go func() { serverErr <- serveOnce(listener, cid) }()
	if err := dialOnce(ctx, addr, sid, client); err != nil {
		// Unblock the server side with a throwaway connection if it is still waiting.
		if c, derr := net.Dial("tcp", addr); derr == nil {
			c.Close()
		}
		<-serverErr
		return fmt.Errorf("client: %w", err)
	}
	if err := <-serverErr; err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}

// --- bundle -------------------------------------------------------------------------------------

// runBundleParse parses a SPIFFE bundle document (what a bundle endpoint serves) with go-spiffe's
// spiffebundle.Parse and prints what it holds; -min-x509 / -min-jwt demand at least that many
// authorities.
func runBundleParse(args []string) error {
	var td, file string
	var minX509, minJWT int
	fs := flag.NewFlagSet("bundle", flag.ContinueOnError)
	fs.StringVar(&td, "trust-domain", "", "trust domain the bundle is for")
	fs.StringVar(&file, "file", "", "the bundle JSON")
	fs.IntVar(&minX509, "min-x509", 1, "at least this many X.509 authorities")
	fs.IntVar(&minJWT, "min-jwt", 0, "at least this many JWT authorities")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	id, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		return usageError{fmt.Sprintf("-trust-domain %q: %v", td, err)}
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return usageError{fmt.Sprintf("-file: %v", err)}
	}
	b, err := spiffebundle.Parse(id, data)
	if err != nil {
		return fmt.Errorf("spiffebundle.Parse: %w", err)
	}
	x, j := len(b.X509Authorities()), len(b.JWTAuthorities())
	hint, hasHint := b.RefreshHint()
	seq, hasSeq := b.SequenceNumber()
	fmt.Printf("bundle for %s: %d X.509 authorities, %d JWT authorities, refresh hint %v (%v), sequence %d (%v)\n",
		b.TrustDomain(), x, j, hint, hasHint, seq, hasSeq)
	if x < minX509 {
		return fmt.Errorf("%d X.509 authorities, expected at least %d", x, minX509)
	}
	if j < minJWT {
		return fmt.Errorf("%d JWT authorities, expected at least %d", j, minJWT)
	}
	return nil
}

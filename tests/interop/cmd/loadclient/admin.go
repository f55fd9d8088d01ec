package main

// The server's admin API: entry creation, listing, readiness and MintX509SVID.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"time"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// parseAndDial parses a command's flags and dials the admin API at *socket.
func parseAndDial(fs *flag.FlagSet, args []string, socket *string) (*grpc.ClientConn, error) {
	if err := parse(fs, args); err != nil {
		return nil, err
	}
	return dialAdmin(*socket)
}

func dialAdmin(socket string) (*grpc.ClientConn, error) {
	if socket == "" {
		return nil, usageError{"-socket is required"}
	}
	return grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// spiffeID splits spiffe://td/path for the admin API.
func spiffeID(id string) (*types.SPIFFEID, error) {
	u, err := url.Parse(id)
	if err != nil || u.Scheme != "spiffe" || u.Host == "" {
		return nil, fmt.Errorf("%q is not a SPIFFE ID", id)
	}
	return &types.SPIFFEID{TrustDomain: u.Host, Path: u.Path}, nil
}

// createEntries creates n entries <td>/<prefix>/<i> (i from 0) under parent with one selector,
// batch at a time; it fails on the first entry the server refuses.
func createEntries(ctx context.Context, conn *grpc.ClientConn, e entryFlags, n int) error {
	parent, err := spiffeID(e.parent)
	if err != nil {
		return err
	}
	typ, value, _ := strings.Cut(e.selector, ":")
	client := entryv1.NewEntryClient(conn)
	for start := 0; start < n; start += e.batch {
		end := min(start+e.batch, n)
		entries := make([]*types.Entry, 0, end-start)
		for i := start; i < end; i++ {
			entries = append(entries, &types.Entry{
				SpiffeId:    &types.SPIFFEID{TrustDomain: parent.TrustDomain, Path: fmt.Sprintf("/%s/%d", e.prefix, i)},
				ParentId:    parent,
				Selectors:   []*types.Selector{{Type: typ, Value: value}},
				X509SvidTtl: 3600,
				JwtSvidTtl:  300,
			})
		}
		resp, err := client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: entries})
		if err != nil {
			return fmt.Errorf("BatchCreateEntry: %w", err)
		}
		for _, r := range resp.Results {
			if codes.Code(r.Status.GetCode()) != codes.OK {
				return fmt.Errorf("BatchCreateEntry refused an entry: %s: %s", codes.Code(r.Status.GetCode()), r.Status.GetMessage())
			}
		}
	}
	return nil
}

func runCreate(args []string) error {
	fs := flag.NewFlagSet("create", flag.ContinueOnError)
	socket := fs.String("socket", "", "admin API socket")
	n := fs.Int("n", 1000, "entries to create")
	name := fs.String("name", "create", "result name")
	var e entryFlags
	e.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := e.check(); err != nil {
		return err
	}
	conn, err := dialAdmin(*socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	start := time.Now()
	if err := createEntries(context.Background(), conn, e, *n); err != nil {
		return err
	}
	elapsed := time.Since(start)
	result(*name+"_s", elapsed.Seconds(), "s")
	result(*name+"_rate", float64(*n)/elapsed.Seconds(), "/s")
	return nil
}

func runList(args []string) error {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	socket := fs.String("socket", "", "admin API socket")
	page := fs.Int("page", 500, "page size")
	name := fs.String("name", "list", "result name")
	conn, err := parseAndDial(fs, args, socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := entryv1.NewEntryClient(conn)
	ctx := context.Background()
	start := time.Now()
	total, token := 0, ""
	for {
		resp, err := client.ListEntries(ctx, &entryv1.ListEntriesRequest{PageSize: int32(*page), PageToken: token},
			grpc.MaxCallRecvMsgSize(64<<20))
		if err != nil {
			return fmt.Errorf("ListEntries after %d entries: %w", total, err)
		}
		total += len(resp.Entries)
		token = resp.NextPageToken
		if token == "" {
			break
		}
	}
	elapsed := time.Since(start)
	count, err := client.CountEntries(ctx, &entryv1.CountEntriesRequest{})
	if err != nil {
		return fmt.Errorf("CountEntries: %w", err)
	}
	if int(count.Count) != total {
		return fmt.Errorf("ListEntries returned %d entries, CountEntries says %d", total, count.Count)
	}
	result(*name+"_s", elapsed.Seconds(), "s")
	result(*name+"_entries", float64(total), "entries")
	return nil
}

func runReady(args []string) error {
	fs := flag.NewFlagSet("ready", flag.ContinueOnError)
	socket := fs.String("socket", "", "admin API socket")
	since := fs.Int64("since", 0, "measure from this Unix time in ns")
	timeout := fs.Duration("timeout", 120*time.Second, "give up after this long")
	name := fs.String("name", "ready", "result name")
	if err := parse(fs, args); err != nil {
		return err
	}
	t0 := origin(*since)
	deadline := time.Now().Add(*timeout)
	for {
		if err := countOnce(*socket); err == nil {
			break
		} else if time.Now().After(deadline) {
			return fmt.Errorf("admin API not ready after %s: %w", *timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	result(*name+"_s", time.Since(t0).Seconds(), "s")
	return nil
}

// countOnce asks CountEntries once on a fresh connection: the server is up and its store read.
func countOnce(socket string) error {
	conn, err := dialAdmin(socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = entryv1.NewEntryClient(conn).CountEntries(ctx, &entryv1.CountEntriesRequest{})
	return err
}

func runMint(args []string) error {
	fs := flag.NewFlagSet("mint", flag.ContinueOnError)
	socket := fs.String("socket", "", "admin API socket")
	clients := fs.Int("clients", 8, "concurrent clients")
	dur := fs.Duration("for", 5*time.Second, "how long to run")
	td := fs.String("trust-domain", "example.org", "trust domain of the minted IDs")
	name := fs.String("name", "mint", "result name")
	conn, err := parseAndDial(fs, args, socket)
	if err != nil {
		return err
	}
	defer conn.Close()
	csrs, err := makeCSRs(*td, 32)
	if err != nil {
		return err
	}
	client := svidv1.NewSVIDClient(conn)
	rate, err := perSecond(*clients, *dur, func(ctx context.Context, c, i int) error {
		_, err := client.MintX509SVID(ctx, &svidv1.MintX509SVIDRequest{Csr: csrs[(c+i)%len(csrs)], Ttl: 600})
		return err
	})
	if err != nil {
		return fmt.Errorf("MintX509SVID: %w", err)
	}
	result(*name+"_rate", rate, "/s")
	return nil
}

// makeCSRs makes n ECDSA P-256 CSRs for spiffe://td/mint/<i>.
func makeCSRs(td string, n int) ([][]byte, error) {
	out := make([][]byte, 0, n)
	for i := 0; i < n; i++ {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		id := &url.URL{Scheme: "spiffe", Host: td, Path: fmt.Sprintf("/mint/%d", i)}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
		if err != nil {
			return nil, err
		}
		out = append(out, der)
	}
	return out, nil
}

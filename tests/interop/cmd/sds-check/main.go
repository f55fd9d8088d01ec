// Command sds-check is an Envoy SDS v3 client built on go-control-plane's generated protos, used
// by the interop scenarios to prove that an agent's SecretDiscoveryService (on the same Unix
// socket as the SPIFFE Workload API) behaves the way Envoy needs. It speaks StreamSecrets like
// Envoy does (node on the first request only, ACK/NACK with version_info/response_nonce), then
// checks FetchSecrets, the error for a name it may not have and DeltaSecrets.
//
//	sds-check -addr unix:///path -expect spiffe://td/id [-rotate-timeout 20s] [-timeout 10s] [-quiet 1s]
//
// Exits 0 when every check holds; otherwise prints "sds-check: FAIL: <why>" and exits 1
// (2 for usage errors).
package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

const (
	secretTypeURL    = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
	spiffeValidator  = "envoy.tls.cert_validator.spiffe"
	spiffeConfigType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig"
	svidName         = "default"
	bundleName       = "ROOTCA"
)

type config struct {
	addr          string
	expect        string
	trustDomain   string
	timeout       time.Duration
	rotateTimeout time.Duration
	quiet         time.Duration
	unknownName   string
}

func main() {
	var c config
	fs := flag.NewFlagSet("sds-check", flag.ContinueOnError)
	fs.StringVar(&c.addr, "addr", os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "agent socket, unix:///path (default $SPIFFE_ENDPOINT_SOCKET)")
	fs.StringVar(&c.expect, "expect", "", "SPIFFE ID the \"default\" certificate must carry (required)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "how long to wait for each expected response")
	fs.DurationVar(&c.rotateTimeout, "rotate-timeout", 20*time.Second, "how long to wait for a pushed rotation")
	fs.DurationVar(&c.quiet, "quiet", time.Second, "window in which nothing may be (re)sent after an ACK or NACK")
	fs.StringVar(&c.unknownName, "unknown", "", "a resource name the caller may not have (default spiffe://<td>/not-mine)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if c.addr == "" || !strings.HasPrefix(c.expect, "spiffe://") {
		fmt.Fprintln(os.Stderr, "sds-check: -addr unix:///path and -expect spiffe://td/path are required")
		os.Exit(2)
	}
	c.trustDomain = strings.SplitN(strings.TrimPrefix(c.expect, "spiffe://"), "/", 2)[0]
	if c.unknownName == "" {
		c.unknownName = "spiffe://" + c.trustDomain + "/not-mine"
	}
	if err := run(c); err != nil {
		fmt.Fprintf(os.Stderr, "sds-check: FAIL: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("sds-check: PASS")
}

func logf(format string, args ...any) {
	fmt.Printf("%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func run(c config) error {
	conn, err := grpc.NewClient(c.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority("sds-grpc"))
	if err != nil {
		return fmt.Errorf("dial %s: %w", c.addr, err)
	}
	defer conn.Close()
	client := secretv3.NewSecretDiscoveryServiceClient(conn)
	node := &corev3.Node{Id: "sds-check", Cluster: "interop"}

	if err := streamChecks(c, client, node); err != nil {
		return err
	}
	if err := fetchCheck(c, client, node); err != nil {
		return err
	}
	if err := unknownNameCheck(c, client, node); err != nil {
		return err
	}
	return deltaCheck(c, client, node)
}

// ---- decoded responses -----------------------------------------------------------------------

// state is what one response carried, decoded and checked.
type state struct {
	version, nonce string
	leaf           *x509.Certificate
	chain          []*x509.Certificate
	roots          []*x509.Certificate // only when ROOTCA was in the response
	bundlePEM      []byte
}

func (s *state) sameContent(o *state) bool {
	if s == nil || o == nil {
		return false
	}
	return bytes.Equal(s.leaf.Raw, o.leaf.Raw) && bytes.Equal(s.bundlePEM, o.bundlePEM)
}

func (s *state) describe() string {
	return fmt.Sprintf("version %q nonce %q leaf serial %x expiring %s", s.version, s.nonce,
		s.leaf.SerialNumber, s.leaf.NotAfter.UTC().Format(time.RFC3339))
}

// decode checks a DiscoveryResponse: type URL, exactly the wanted names, the "default"
// TlsCertificate and (when wanted) the ROOTCA SPIFFE validator, and that the leaf verifies
// against that bundle. Stream responses must carry a version and a nonce; FetchSecrets
// responses need not (spire-agent leaves both empty there).
func decode(c config, resp *discoveryv3.DiscoveryResponse, want []string) (*state, error) {
	return decodeResp(c, resp, want, true)
}

func decodeResp(c config, resp *discoveryv3.DiscoveryResponse, want []string, streaming bool) (*state, error) {
	if resp.GetTypeUrl() != secretTypeURL {
		return nil, fmt.Errorf("response type_url %q, want %q", resp.GetTypeUrl(), secretTypeURL)
	}
	if streaming && (resp.GetVersionInfo() == "" || resp.GetNonce() == "") {
		return nil, fmt.Errorf("response without version_info (%q) or nonce (%q)", resp.GetVersionInfo(), resp.GetNonce())
	}
	secrets := map[string]*tlsv3.Secret{}
	var names []string
	for i, a := range resp.GetResources() {
		if a.GetTypeUrl() != secretTypeURL {
			return nil, fmt.Errorf("resource %d has type URL %q, want %q", i, a.GetTypeUrl(), secretTypeURL)
		}
		s := &tlsv3.Secret{}
		if err := a.UnmarshalTo(s); err != nil {
			return nil, fmt.Errorf("resource %d does not decode as a Secret: %w", i, err)
		}
		if _, dup := secrets[s.GetName()]; dup {
			return nil, fmt.Errorf("resource %q sent twice", s.GetName())
		}
		secrets[s.GetName()] = s
		names = append(names, s.GetName())
	}
	sort.Strings(names)
	w := append([]string(nil), want...)
	sort.Strings(w)
	if strings.Join(names, ",") != strings.Join(w, ",") {
		return nil, fmt.Errorf("response (version %q) carries resources %q, want exactly %q", resp.GetVersionInfo(), names, w)
	}
	st := &state{version: resp.GetVersionInfo(), nonce: resp.GetNonce()}
	if err := checkSVID(c, secrets[svidName], st); err != nil {
		return nil, err
	}
	if s, ok := secrets[bundleName]; ok {
		if err := checkBundle(c, s, st); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func dataSource(what string, ds *corev3.DataSource) ([]byte, error) {
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, nil
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), nil
	case nil:
		return nil, fmt.Errorf("%s: empty DataSource", what)
	default:
		return nil, fmt.Errorf("%s: DataSource %T, want inline bytes", what, s)
	}
}

func parsePEMCerts(what string, data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue // bundles may carry CRLs
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate", what)
	}
	return certs, nil
}

func checkSVID(c config, s *tlsv3.Secret, st *state) error {
	tc := s.GetTlsCertificate()
	if tc == nil {
		return fmt.Errorf("secret %q is not a tls_certificate (%T)", svidName, s.GetType())
	}
	chainPEM, err := dataSource("default certificate_chain", tc.GetCertificateChain())
	if err != nil {
		return err
	}
	chain, err := parsePEMCerts("default certificate_chain", chainPEM)
	if err != nil {
		return err
	}
	leaf := chain[0]
	var uris []string
	for _, u := range leaf.URIs {
		uris = append(uris, u.String())
	}
	if len(uris) != 1 || uris[0] != c.expect {
		return fmt.Errorf("default leaf URI SANs %q, want exactly [%s]", uris, c.expect)
	}
	keyPEM, err := dataSource("default private_key", tc.GetPrivateKey())
	if err != nil {
		return err
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "PRIVATE KEY" {
		return fmt.Errorf("default private_key is not a PEM \"PRIVATE KEY\" (PKCS#8) block")
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return fmt.Errorf("default private_key: PKCS#8: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return fmt.Errorf("default private_key: %T is not a signer", key)
	}
	type equaler interface{ Equal(crypto.PublicKey) bool }
	if pub, ok := signer.Public().(equaler); !ok || !pub.Equal(leaf.PublicKey) {
		return fmt.Errorf("default private_key does not match the leaf's public key")
	}
	st.leaf, st.chain = leaf, chain
	return nil
}

func checkBundle(c config, s *tlsv3.Secret, st *state) error {
	vc := s.GetValidationContext()
	if vc == nil {
		return fmt.Errorf("secret %q is not a validation_context (%T)", bundleName, s.GetType())
	}
	cv := vc.GetCustomValidatorConfig()
	if cv.GetName() != spiffeValidator {
		return fmt.Errorf("ROOTCA custom_validator_config.name %q, want %q", cv.GetName(), spiffeValidator)
	}
	if cv.GetTypedConfig().GetTypeUrl() != spiffeConfigType {
		return fmt.Errorf("ROOTCA typed_config type URL %q, want %q", cv.GetTypedConfig().GetTypeUrl(), spiffeConfigType)
	}
	cfg := &tlsv3.SPIFFECertValidatorConfig{}
	if err := cv.GetTypedConfig().UnmarshalTo(cfg); err != nil {
		return fmt.Errorf("ROOTCA typed_config: %w", err)
	}
	tds := cfg.GetTrustDomains()
	if len(tds) == 0 || tds[0].GetName() != c.trustDomain {
		var got []string
		for _, td := range tds {
			got = append(got, td.GetName())
		}
		return fmt.Errorf("ROOTCA trust_domains %q, want first %q", got, c.trustDomain)
	}
	bundlePEM, err := dataSource("ROOTCA trust_bundle", tds[0].GetTrustBundle())
	if err != nil {
		return err
	}
	roots, err := parsePEMCerts("ROOTCA trust_bundle", bundlePEM)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, ic := range st.chain[1:] {
		inter.AddCert(ic)
	}
	if _, err := st.leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("default leaf does not verify against the ROOTCA bundle: %w", err)
	}
	st.roots, st.bundlePEM = roots, bundlePEM
	return nil
}

// ---- StreamSecrets ---------------------------------------------------------------------------

type recvResult struct {
	resp *discoveryv3.DiscoveryResponse
	err  error
}

type sdsStream struct {
	c      config
	s      secretv3.SecretDiscoveryService_StreamSecretsClient
	ch     chan recvResult
	cancel context.CancelFunc
}

func openStream(c config, client secretv3.SecretDiscoveryServiceClient) (*sdsStream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s, err := client.StreamSecrets(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("StreamSecrets: %w", err)
	}
	st := &sdsStream{c: c, s: s, ch: make(chan recvResult, 16), cancel: cancel}
	go func() {
		for {
			resp, err := s.Recv()
			st.ch <- recvResult{resp, err}
			if err != nil {
				return
			}
		}
	}()
	return st, nil
}

func (st *sdsStream) send(req *discoveryv3.DiscoveryRequest) error {
	req.TypeUrl = secretTypeURL
	kind := "request"
	switch {
	case req.GetErrorDetail() != nil:
		kind = "NACK"
	case req.GetResponseNonce() != "":
		kind = "ACK"
	}
	logf("-> %s version_info=%q response_nonce=%q resource_names=%q node=%v", kind,
		req.GetVersionInfo(), req.GetResponseNonce(), req.GetResourceNames(), req.GetNode() != nil)
	if err := st.s.Send(req); err != nil {
		return fmt.Errorf("send %s: %w", kind, err)
	}
	return nil
}

// recv waits up to d for a response; (nil, nil) on timeout.
func (st *sdsStream) recv(d time.Duration) (*discoveryv3.DiscoveryResponse, error) {
	select {
	case r := <-st.ch:
		if r.err != nil {
			return nil, fmt.Errorf("stream ended: %w", r.err)
		}
		var names []string
		for _, a := range r.resp.GetResources() {
			s := &tlsv3.Secret{}
			_ = a.UnmarshalTo(s)
			names = append(names, s.GetName())
		}
		logf("<- response version_info=%q nonce=%q resources=%q", r.resp.GetVersionInfo(), r.resp.GetNonce(), names)
		return r.resp, nil
	case <-time.After(d):
		return nil, nil
	}
}

func (st *sdsStream) mustRecv(what string) (*discoveryv3.DiscoveryResponse, error) {
	resp, err := st.recv(st.c.timeout)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if resp == nil {
		return nil, fmt.Errorf("%s: no response within %s", what, st.c.timeout)
	}
	return resp, nil
}

func (st *sdsStream) close() {
	_ = st.s.CloseSend()
	st.cancel()
}

func streamChecks(c config, client secretv3.SecretDiscoveryServiceClient, node *corev3.Node) error {
	st, err := openStream(c, client)
	if err != nil {
		return err
	}
	defer st.close()
	both := []string{svidName, bundleName}

	// 1. First request: node, type URL, ["default"].
	if err := st.send(&discoveryv3.DiscoveryRequest{Node: node, ResourceNames: []string{svidName}}); err != nil {
		return err
	}
	r1, err := st.mustRecv("first response")
	if err != nil {
		return err
	}
	s1, err := decode(c, r1, []string{svidName})
	if err != nil {
		return fmt.Errorf("first response: %w", err)
	}
	logf("ok: v1 %s, default is %s with a matching PKCS#8 key", s1.describe(), c.expect)

	// 2. ACK v1 and widen the subscription to ["default","ROOTCA"] (node not repeated). If the
	// agent pushed a rotation of "default" meanwhile, our nonce is stale and gets ignored, as
	// Envoy expects; then answer the latest response, as Envoy would.
	accepted := s1
	var s2 *state
	for attempt := 0; s2 == nil; attempt++ {
		if attempt > 3 {
			return fmt.Errorf("widened subscription never answered with %q", both)
		}
		if err := st.send(&discoveryv3.DiscoveryRequest{VersionInfo: accepted.version,
			ResponseNonce: accepted.nonce, ResourceNames: both}); err != nil {
			return err
		}
		r, err := st.mustRecv("response to [default ROOTCA]")
		if err != nil {
			return err
		}
		if len(r.GetResources()) == 1 {
			sp, err := decode(c, r, []string{svidName})
			if err != nil {
				return fmt.Errorf("push before the widened subscription: %w", err)
			}
			if sp.sameContent(accepted) {
				return fmt.Errorf("agent re-sent the acknowledged default as %s", sp.describe())
			}
			logf("note: a rotation push crossed our request (%s); answering it", sp.describe())
			accepted = sp
			continue
		}
		if s2, err = decode(c, r, both); err != nil {
			return fmt.Errorf("response to [default ROOTCA]: %w", err)
		}
	}
	if s2.version == accepted.version {
		// Allowed: version_info is opaque and the nonce identifies the response; spire-agent
		// bumps its version only when the workload's identities change, not the subscription.
		logf("note: the response to the widened subscription kept version %q (new nonce %q)", s2.version, s2.nonce)
	}
	logf("ok: v2 %s, ROOTCA is %s for %s with %d root(s); default verifies against it",
		s2.describe(), spiffeValidator, c.trustDomain, len(s2.roots))

	// 3. ACK v2: nothing may come back within the quiet window (unless the SVID really rotated
	// meanwhile; then that push is ACKed and the window restarts).
	accepted = s2
	var rotated *state
	for attempt := 0; ; attempt++ {
		if err := st.send(&discoveryv3.DiscoveryRequest{VersionInfo: accepted.version,
			ResponseNonce: accepted.nonce, ResourceNames: both}); err != nil {
			return err
		}
		r, err := st.recv(c.quiet)
		if err != nil {
			return fmt.Errorf("after ACK of %q: %w", accepted.version, err)
		}
		if r == nil {
			logf("ok: nothing sent within %s of the ACK of %q", c.quiet, accepted.version)
			break
		}
		sp, err := decode(c, r, both)
		if err != nil {
			return fmt.Errorf("response after ACK of %q: %w", accepted.version, err)
		}
		if sp.sameContent(accepted) || sp.version == accepted.version {
			return fmt.Errorf("agent answered the ACK of %q with the same secrets again (%s)", accepted.version, sp.describe())
		}
		if attempt >= 3 {
			return fmt.Errorf("agent keeps sending after ACKs (last %s)", sp.describe())
		}
		logf("note: a rotation arrived inside the quiet window (%s); ACKing it and waiting again", sp.describe())
		accepted = sp
	}

	// 4. Wait for a pushed rotation of "default"; NACK it.
	deadline := time.Now().Add(c.rotateTimeout)
	for rotated == nil {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("no rotation of default pushed within %s (last accepted %s)", c.rotateTimeout, accepted.describe())
		}
		r, err := st.recv(left)
		if err != nil {
			return fmt.Errorf("waiting for a rotation: %w", err)
		}
		if r == nil {
			continue
		}
		sp, err := decode(c, r, both)
		if err != nil {
			return fmt.Errorf("pushed response: %w", err)
		}
		if sp.version == accepted.version {
			return fmt.Errorf("push reuses the accepted version %q", sp.version)
		}
		if bytes.Equal(sp.leaf.Raw, accepted.leaf.Raw) {
			if bytes.Equal(sp.bundlePEM, accepted.bundlePEM) {
				return fmt.Errorf("agent pushed unchanged secrets as a new version (%s)", sp.describe())
			}
			logf("note: bundle-only push (%s); ACKing it", sp.describe())
			accepted = sp
			if err := st.send(&discoveryv3.DiscoveryRequest{VersionInfo: accepted.version,
				ResponseNonce: accepted.nonce, ResourceNames: both}); err != nil {
				return err
			}
			continue
		}
		rotated = sp
	}
	logf("ok: rotation pushed: %s (was serial %x expiring %s)", rotated.describe(),
		accepted.leaf.SerialNumber, accepted.leaf.NotAfter.UTC().Format(time.RFC3339))
	if err := st.send(&discoveryv3.DiscoveryRequest{VersionInfo: accepted.version, ResponseNonce: rotated.nonce,
		ResourceNames: both,
		ErrorDetail:   &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "sds-check: rejecting this version on purpose"}}); err != nil {
		return err
	}
	quietEnd := time.Now().Add(c.quiet)
	last := rotated
	for {
		left := time.Until(quietEnd)
		if left <= 0 {
			break
		}
		r, err := st.recv(left)
		if err != nil {
			return fmt.Errorf("after NACK of %q: %w", rotated.version, err)
		}
		if r == nil {
			break
		}
		sp, err := decode(c, r, both)
		if err != nil {
			return fmt.Errorf("response after NACK of %q: %w", rotated.version, err)
		}
		if sp.version == rotated.version {
			return fmt.Errorf("agent re-sent the NACKed version %q", rotated.version)
		}
		if sp.sameContent(last) {
			return fmt.Errorf("agent re-sent the NACKed secrets under version %q", sp.version)
		}
		logf("note: a later version with new secrets arrived after the NACK (%s); allowed", sp.describe())
		last = sp
	}
	logf("ok: NACK of %q (staying on %q) was not answered with the same version within %s", rotated.version, accepted.version, c.quiet)
	return nil
}

// ---- FetchSecrets, unknown name, DeltaSecrets ------------------------------------------------

func fetchCheck(c config, client secretv3.SecretDiscoveryServiceClient, node *corev3.Node) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	resp, err := client.FetchSecrets(ctx, &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: secretTypeURL,
		ResourceNames: []string{svidName, bundleName}})
	if err != nil {
		return fmt.Errorf("FetchSecrets: %w", err)
	}
	s, err := decodeResp(c, resp, []string{svidName, bundleName}, false)
	if err != nil {
		return fmt.Errorf("FetchSecrets: %w", err)
	}
	logf("ok: FetchSecrets returned default and ROOTCA (%s)", s.describe())
	return nil
}

func unknownNameCheck(c config, client secretv3.SecretDiscoveryServiceClient, node *corev3.Node) error {
	st, err := openStream(c, client)
	if err != nil {
		return err
	}
	defer st.close()
	if err := st.send(&discoveryv3.DiscoveryRequest{Node: node, ResourceNames: []string{c.unknownName}}); err != nil {
		return err
	}
	var r recvResult
	select {
	case r = <-st.ch:
	case <-time.After(c.timeout):
		return fmt.Errorf("stream asking for %s neither answered nor failed within %s", c.unknownName, c.timeout)
	}
	if r.err == nil {
		return fmt.Errorf("stream asking for %s was answered (version %q) instead of failing", c.unknownName, r.resp.GetVersionInfo())
	}
	sts := status.Convert(r.err)
	if sts.Code() != codes.InvalidArgument || !strings.Contains(sts.Message(), c.unknownName) {
		return fmt.Errorf("stream asking for %s failed with %v %q, want InvalidArgument naming it", c.unknownName, sts.Code(), sts.Message())
	}
	logf("ok: asking for %s fails the stream: InvalidArgument %q", c.unknownName, sts.Message())
	return nil
}

func deltaCheck(c config, client secretv3.SecretDiscoveryServiceClient, node *corev3.Node) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	ds, err := client.DeltaSecrets(ctx)
	if err == nil {
		// The status arrives with the first Recv; a Send may already see the stream closed (EOF).
		if serr := ds.Send(&discoveryv3.DeltaDiscoveryRequest{Node: node, TypeUrl: secretTypeURL,
			ResourceNamesSubscribe: []string{svidName}}); serr != nil && !errors.Is(serr, io.EOF) {
			err = serr
		} else {
			_, err = ds.Recv()
		}
	}
	if err == nil {
		return errors.New("DeltaSecrets answered; want Unimplemented")
	}
	if status.Code(err) != codes.Unimplemented {
		return fmt.Errorf("DeltaSecrets: %v, want Unimplemented", err)
	}
	logf("ok: DeltaSecrets is Unimplemented (%q)", status.Convert(err).Message())
	return nil
}

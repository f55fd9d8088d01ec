package dev.signet.interop;

import io.spiffe.bundle.BundleSource;
import io.spiffe.bundle.jwtbundle.JwtBundle;
import io.spiffe.bundle.jwtbundle.JwtBundleSet;
import io.spiffe.bundle.x509bundle.X509Bundle;
import io.spiffe.spiffeid.SpiffeId;
import io.spiffe.spiffeid.TrustDomain;
import io.spiffe.svid.jwtsvid.JwtSvid;
import io.spiffe.svid.x509svid.X509Svid;
import io.spiffe.svid.x509svid.X509SvidValidator;
import io.spiffe.workloadapi.DefaultJwtSource;
import io.spiffe.workloadapi.DefaultWorkloadApiClient;
import io.spiffe.workloadapi.DefaultX509Source;
import io.spiffe.workloadapi.JwtSource;
import io.spiffe.workloadapi.JwtSourceOptions;
import io.spiffe.workloadapi.Watcher;
import io.spiffe.workloadapi.WorkloadApiClient;
import io.spiffe.workloadapi.X509Context;
import java.math.BigInteger;
import java.security.SecureRandom;
import java.security.Signature;
import java.security.cert.CertPathValidator;
import java.security.cert.CertificateFactory;
import java.security.cert.PKIXParameters;
import java.security.cert.TrustAnchor;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * java-spiffe (grpc-java, grpc-netty-linux) Workload API checks, the Java twin of
 * cmd/spiffe-check and py/spiffe_check.py.
 *
 * <p>Every subcommand exits 0 when its check holds, else prints {@code spiffe-check.java <cmd>:
 * FAIL: <why>} and exits 1 (2 for usage errors). The socket comes from {@code -addr} (as
 * {@code unix:///path}); the clients are java-spiffe's own, untouched: no channel option, no
 * authority override (grpc-java sends the raw socket path as {@code :authority}).
 *
 * <pre>
 *   x509  -addr A -expect ID       DefaultWorkloadApiClient.fetchX509Context and DefaultX509Source:
 *                                  default SVID has ID; every chain verified to the bundle by
 *                                  java-spiffe's X509SvidValidator and by the JDK's PKIX
 *                                  CertPathValidator; the key matches the leaf
 *   jwt   -addr A -audience AUD -expect ID
 *                                  fetchJwtSvid; validateJwtSvid for AUD (ok) and a wrong audience
 *                                  (refused, SPIRE's text); fetchJwtBundles + local
 *                                  JwtSvid.parseAndValidate (AUD ok, wrong refused); DefaultJwtSource
 *   watch -addr A -rotations N -timeout S [-expect ID]
 *                                  watchX509Context until N new default leaves, each verified
 *   error -addr A                  a workload with no entry: PERMISSION_DENIED "no identity issued"
 * </pre>
 */
public final class SpiffeCheck {
  private static String cmd = "?";

  private SpiffeCheck() {}

  static final class CheckFailed extends RuntimeException {
    CheckFailed(String why) {
      super(why);
    }
  }

  static CheckFailed fail(String why) {
    return new CheckFailed(why);
  }

  public static void main(String[] argv) {
    if (argv.length < 1) {
      usage("missing subcommand");
    }
    cmd = argv[0];
    Map<String, String> flags = new HashMap<>();
    for (int i = 1; i < argv.length; i++) {
      if (!argv[i].startsWith("-") || i + 1 >= argv.length) {
        usage("bad argument " + argv[i]);
      }
      flags.put(argv[i].substring(1), argv[++i]);
    }
    String addr = flags.getOrDefault("addr", System.getenv("SPIFFE_ENDPOINT_SOCKET"));
    if (addr == null || addr.isEmpty()) {
      usage("-addr or SPIFFE_ENDPOINT_SOCKET is required");
    }
    String expect = flags.getOrDefault("expect", "");
    double timeout = Double.parseDouble(flags.getOrDefault("timeout", "60"));
    // A hung client must not hang the scenario: fail after the deadline.
    Thread watchdog =
        new Thread(
            () -> {
              try {
                Thread.sleep((long) ((timeout + 30) * 1000));
              } catch (InterruptedException e) {
                return;
              }
              System.err.printf("spiffe-check.java %s: FAIL: no result within %.0fs%n", cmd, timeout + 30);
              Runtime.getRuntime().halt(1);
            });
    watchdog.setDaemon(true);
    watchdog.start();
    int rc = 0;
    try {
      switch (cmd) {
        case "x509" -> checkX509(addr, expect);
        case "jwt" -> checkJwt(addr, flags.getOrDefault("audience", "spiffe-check"), expect);
        case "watch" ->
            checkWatch(addr, Integer.parseInt(flags.getOrDefault("rotations", "2")), timeout, expect);
        case "error" -> checkError(addr);
        default -> usage("unknown subcommand " + cmd);
      }
    } catch (CheckFailed e) {
      System.err.printf("spiffe-check.java %s: FAIL: %s%n", cmd, e.getMessage());
      rc = 1;
    } catch (Exception e) {
      System.err.printf("spiffe-check.java %s: FAIL: %s%n", cmd, chain(e));
      e.printStackTrace();
      rc = 1;
    }
    System.out.flush();
    // grpc-java's event loops are not daemon threads.
    System.exit(rc);
  }

  static void usage(String why) {
    System.err.println("spiffe-check.java: " + why);
    System.err.println("usage: SpiffeCheck x509|jwt|watch|error -addr unix:///path [-expect ID]"
        + " [-audience A] [-rotations N] [-timeout S]");
    System.exit(2);
  }

  /** Every message of a throwable and its causes, outermost first. */
  static String chain(Throwable t) {
    StringBuilder b = new StringBuilder();
    for (Throwable c = t; c != null; c = c.getCause()) {
      if (b.length() > 0) {
        b.append(" <- ");
      }
      b.append(c.getClass().getSimpleName()).append(": ").append(c.getMessage());
    }
    return b.toString();
  }

  /** The gRPC status of a failed call ("CODE: description"), from grpc-java's exception. */
  static String grpcStatus(Throwable t) {
    for (Throwable c = t; c != null; c = c.getCause()) {
      if (c.getClass().getName().equals("io.grpc.StatusRuntimeException")) {
        return c.getMessage();
      }
    }
    return null;
  }

  static WorkloadApiClient client(String addr) throws Exception {
    return DefaultWorkloadApiClient.newClient(
        DefaultWorkloadApiClient.ClientOptions.builder().spiffeSocketPath(addr).build());
  }

  /**
   * Verifies one X509Svid against the bundles: java-spiffe's own validator, then the JDK's RFC
   * 5280 PKIX path validation to the trust domain's roots, the leaf's only URI SAN being the
   * SVID's ID, and the private key matching the leaf.
   */
  static void verifySvid(X509Svid svid, BundleSource<X509Bundle> bundles) throws Exception {
    SpiffeId id = svid.getSpiffeId();
    List<X509Certificate> chain = svid.getChain();
    try {
      X509SvidValidator.verifyChain(chain, bundles);
    } catch (Exception e) {
      throw fail(id + ": X509SvidValidator refused the chain: " + chain(e));
    }
    X509Bundle bundle = bundles.getBundleForTrustDomain(id.getTrustDomain());
    if (bundle.getX509Authorities().isEmpty()) {
      throw fail("no X.509 authorities for " + id.getTrustDomain());
    }
    Set<TrustAnchor> anchors = new HashSet<>();
    for (X509Certificate root : bundle.getX509Authorities()) {
      anchors.add(new TrustAnchor(root, null));
    }
    PKIXParameters params = new PKIXParameters(anchors);
    params.setRevocationEnabled(false);
    try {
      CertPathValidator.getInstance("PKIX")
          .validate(CertificateFactory.getInstance("X.509").generateCertPath(chain), params);
    } catch (Exception e) {
      throw fail(id + ": PKIX path validation to the bundle failed: " + chain(e));
    }
    X509Certificate leaf = svid.getLeaf();
    List<String> uris = new ArrayList<>();
    if (leaf.getSubjectAlternativeNames() != null) {
      for (List<?> san : leaf.getSubjectAlternativeNames()) {
        if (((Integer) san.get(0)) == 6) {
          uris.add((String) san.get(1));
        }
      }
    }
    if (!uris.equals(List.of(id.toString()))) {
      throw fail("leaf URI SANs " + uris + ", want [" + id + "]");
    }
    byte[] data = new byte[32];
    new SecureRandom().nextBytes(data);
    String alg = svid.getPrivateKey().getAlgorithm().equals("RSA") ? "SHA256withRSA" : "SHA256withECDSA";
    Signature signer = Signature.getInstance(alg);
    signer.initSign(svid.getPrivateKey());
    signer.update(data);
    byte[] sig = signer.sign();
    Signature verifier = Signature.getInstance(alg);
    verifier.initVerify(leaf.getPublicKey());
    verifier.update(data);
    if (!verifier.verify(sig)) {
      throw fail(id + ": private key does not match the leaf");
    }
  }

  static void checkX509(String addr, String expect) throws Exception {
    X509Context ctx;
    try (WorkloadApiClient client = client(addr)) {
      ctx = client.fetchX509Context();
    }
    String got = ctx.getDefaultSvid().getSpiffeId().toString();
    if (!got.equals(expect)) {
      throw fail("default SVID is " + got + ", want " + expect);
    }
    for (X509Svid svid : ctx.getX509Svids()) {
      verifySvid(svid, ctx.getX509BundleSet());
    }
    DefaultX509Source.X509SourceOptions options =
        DefaultX509Source.X509SourceOptions.builder()
            .spiffeSocketPath(addr)
            .initTimeout(Duration.ofSeconds(30))
            .build();
    try (DefaultX509Source source = DefaultX509Source.newSource(options)) {
      X509Svid svid = source.getX509Svid();
      if (!svid.getSpiffeId().toString().equals(expect)) {
        throw fail("DefaultX509Source SVID is " + svid.getSpiffeId() + ", want " + expect);
      }
      verifySvid(svid, source);
    }
    X509Certificate leaf = ctx.getDefaultSvid().getLeaf();
    System.out.println("SPIFFE ID: " + got);
    System.out.println("Expires: " + leaf.getNotAfter().toInstant());
    System.out.println("SVIDs: " + ctx.getX509Svids().size());
  }

  static void checkJwt(String addr, String audience, String expect) throws Exception {
    String wrong = "not-" + audience;
    JwtSvid svid;
    JwtBundleSet bundles;
    try (WorkloadApiClient client = client(addr)) {
      svid = client.fetchJwtSvid(audience);
      if (!svid.getSpiffeId().toString().equals(expect)) {
        throw fail("JWT-SVID is for " + svid.getSpiffeId() + ", want " + expect);
      }
      if (!svid.getAudience().equals(Set.of(audience))) {
        throw fail("JWT-SVID audience " + svid.getAudience() + ", want [" + audience + "]");
      }
      JwtSvid validated = client.validateJwtSvid(svid.getToken(), audience);
      if (!validated.getSpiffeId().toString().equals(expect)) {
        throw fail("validated SPIFFE ID " + validated.getSpiffeId() + ", want " + expect);
      }
      try {
        client.validateJwtSvid(svid.getToken(), wrong);
        throw fail("validateJwtSvid accepted the wrong audience " + wrong);
      } catch (io.spiffe.exception.JwtSvidException e) {
        String want = "expected audience in [\"" + wrong + "\"] (audience=[\"" + audience + "\"])";
        String status = grpcStatus(e);
        if (status == null || !status.startsWith("INVALID_ARGUMENT: ") || !status.contains(want)) {
          throw fail("wrong audience refused with " + chain(e) + ", want INVALID_ARGUMENT with SPIRE's text " + want);
        }
      }
      bundles = client.fetchJwtBundles();
    }
    TrustDomain td = SpiffeId.parse(expect).getTrustDomain();
    JwtBundle bundle = bundles.getBundleForTrustDomain(td);
    if (bundle.getJwtAuthorities().isEmpty()) {
      throw fail("no JWT authorities for " + td);
    }
    JwtSvid.parseAndValidate(svid.getToken(), bundles, Set.of(audience));
    try {
      JwtSvid.parseAndValidate(svid.getToken(), bundles, Set.of(wrong));
      throw fail("local validation accepted the wrong audience " + wrong);
    } catch (io.spiffe.exception.JwtSvidException e) {
      // refused, as it must be
    }
    JwtSourceOptions options =
        JwtSourceOptions.builder().spiffeSocketPath(addr).initTimeout(Duration.ofSeconds(30)).build();
    try (JwtSource source = DefaultJwtSource.newSource(options)) {
      JwtSvid fromSource = source.fetchJwtSvid(audience);
      if (!fromSource.getSpiffeId().toString().equals(expect)) {
        throw fail("DefaultJwtSource SVID is for " + fromSource.getSpiffeId() + ", want " + expect);
      }
      JwtSvid.parseAndValidate(fromSource.getToken(), source, Set.of(audience));
    }
    System.out.println("SPIFFE ID: " + svid.getSpiffeId());
    System.out.println("Audience: " + audience);
    System.out.println("Expires: " + svid.getExpiry().toInstant());
  }

  static void checkWatch(String addr, int rotations, double timeout, String expect) throws Exception {
    List<BigInteger> serials = new ArrayList<>();
    List<String> errors = new ArrayList<>();
    String[] failure = {null};
    Object lock = new Object();
    try (WorkloadApiClient client = client(addr)) {
      client.watchX509Context(
          new Watcher<X509Context>() {
            @Override
            public void onUpdate(X509Context ctx) {
              synchronized (lock) {
                try {
                  X509Svid svid = ctx.getDefaultSvid();
                  if (!expect.isEmpty() && !svid.getSpiffeId().toString().equals(expect)) {
                    failure[0] = "watch got " + svid.getSpiffeId() + ", want " + expect;
                  }
                  verifySvid(svid, ctx.getX509BundleSet());
                  BigInteger serial = svid.getLeaf().getSerialNumber();
                  if (serials.isEmpty() || !serials.get(serials.size() - 1).equals(serial)) {
                    serials.add(serial);
                    System.out.printf("update: serial %x expires %s%n", serial, svid.getLeaf().getNotAfter().toInstant());
                  }
                } catch (CheckFailed e) {
                  failure[0] = "an update did not verify: " + e.getMessage();
                } catch (Exception e) {
                  failure[0] = "an update did not verify: " + chain(e);
                }
                lock.notifyAll();
              }
            }

            @Override
            public void onError(Throwable err) {
              synchronized (lock) {
                errors.add(chain(err));
                lock.notifyAll();
              }
            }
          });
      long deadline = System.nanoTime() + (long) (timeout * 1e9);
      synchronized (lock) {
        while (serials.size() < rotations + 1 && failure[0] == null) {
          long left = deadline - System.nanoTime();
          if (left <= 0) {
            break;
          }
          lock.wait(Math.max(1, left / 1_000_000));
        }
      }
    }
    synchronized (lock) {
      if (failure[0] != null) {
        throw fail(failure[0]);
      }
      int seen = serials.size() - 1;
      if (seen < rotations) {
        throw fail("saw " + Math.max(seen, 0) + " rotations in " + timeout + "s, want " + rotations + "; errors " + errors);
      }
      System.out.println("Rotations: " + seen);
    }
  }

  static void checkError(String addr) throws Exception {
    try (WorkloadApiClient client = client(addr)) {
      client.fetchX509Context();
      throw fail("a workload without an entry got an X.509 context");
    } catch (io.spiffe.exception.X509ContextException e) {
      String status = grpcStatus(e);
      if (status == null || !status.equals("PERMISSION_DENIED: no identity issued")) {
        throw fail("refused with " + chain(e) + ", want PERMISSION_DENIED: no identity issued");
      }
    }
    System.out.println("No identity: PERMISSION_DENIED: no identity issued");
  }
}

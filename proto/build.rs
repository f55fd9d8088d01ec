//! Compiles the protos with protox (pure Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/workload.proto",
        "proto/spire/api/types/types.proto",
        "proto/spire/api/server/agent/v1/agent.proto",
        "proto/spire/api/server/entry/v1/entry.proto",
        "proto/spire/api/server/svid/v1/svid.proto",
        "proto/spire/api/server/bundle/v1/bundle.proto",
        "proto/spire/api/server/localauthority/v1/localauthority.proto",
        "proto/spire/api/server/trustdomain/v1/trustdomain.proto",
        "proto/signet/sync/v1/sync.proto",
        "proto/istio/security/v1alpha1/ca.proto",
    ];
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // The agent serves one chain, key and bundle to every stream that asks: shared bytes.
        .bytes(".X509SVID")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

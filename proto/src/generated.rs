//! The code tonic-prost generates from the `.proto` files, one module per package.

/// The SPIFFE Workload API. Its proto has no package, so the service is `SpiffeWorkloadAPI`.
pub mod workload {
    include!(concat!(env!("OUT_DIR"), "/_.rs"));
}

/// SPIRE's public server API (`spire.api.*`).
pub mod spire {
    pub mod api {
        pub mod types {
            include!(concat!(env!("OUT_DIR"), "/spire.api.types.rs"));
        }
        pub mod server {
            pub mod agent {
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/spire.api.server.agent.v1.rs"));
                }
            }
            pub mod entry {
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/spire.api.server.entry.v1.rs"));
                }
            }
            pub mod svid {
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/spire.api.server.svid.v1.rs"));
                }
            }
            pub mod bundle {
                pub mod v1 {
                    include!(concat!(env!("OUT_DIR"), "/spire.api.server.bundle.v1.rs"));
                }
            }
            pub mod localauthority {
                pub mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/spire.api.server.localauthority.v1.rs"
                    ));
                }
            }
            pub mod trustdomain {
                pub mod v1 {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/spire.api.server.trustdomain.v1.rs"
                    ));
                }
            }
        }
    }
}

/// Signet's own services, kept apart from SPIRE's packages.
pub mod signet {
    pub mod sync {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/signet.sync.v1.rs"));
        }
    }
}

/// Istio's certificate service (`istio.v1.auth`), served when `istio_ca` is configured.
pub mod istio {
    pub mod v1 {
        pub mod auth {
            include!(concat!(env!("OUT_DIR"), "/istio.v1.auth.rs"));
        }
    }
}

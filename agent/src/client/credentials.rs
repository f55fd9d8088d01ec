//! What the client presents and trusts once the agent has an SVID: a narrow handle the
//! client defines (SPIRE's client takes a `KeysAndBundle` function the same way), so that it
//! never depends on how the agent keeps its identity (`svid::AgentIdentity` implements it).

use std::fmt::Debug;
use std::sync::Arc;

use signet_common::id::SpiffeId;

/// An X509-SVID the client can present.
pub trait ClientSvid: Send + Sync + Debug {
    /// Its SPIFFE ID.
    fn spiffe_id(&self) -> &SpiffeId;
    /// Its chain, leaf first, DER.
    fn chain(&self) -> &[Vec<u8>];
    /// Its private key, PKCS#8 DER.
    fn private_key(&self) -> &[u8];
}

/// The agent's current SVID and the trust bundle roots the server is checked against.
pub trait Credentials: Send + Sync + Debug {
    /// The SVID to present; the same `Arc` until it is replaced.
    fn svid(&self) -> Arc<dyn ClientSvid>;
    /// The X.509 roots (DER); the same `Arc` until they change.
    fn bundle_roots(&self) -> Arc<Vec<Vec<u8>>>;
}

//! Placeholder: certificate templates and CSR checks. Replaced by the CA work.

use super::{CaError, CsrPublicKey};

pub(super) fn verify_csr(_csr_der: &[u8]) -> Result<CsrPublicKey, CaError> {
    Err(CaError::MalformedCsr("not implemented".into()))
}

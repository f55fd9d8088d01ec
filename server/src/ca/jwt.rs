//! Placeholder: JWT signing. Replaced by the CA work.

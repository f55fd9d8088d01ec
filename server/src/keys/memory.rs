//! Placeholder: in-memory key manager. Replaced by the CA work.

//! Placeholder: disk key manager. Replaced by the CA work.

//! Placeholder: conformance suite.

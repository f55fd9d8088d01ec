//! Placeholder until the Bundle service lands.

use std::sync::Arc;

use super::ApiState;

/// Placeholder.
#[derive(Debug)]
pub struct BundleService {
    #[allow(dead_code, reason = "placeholder")]
    state: Arc<ApiState>,
}

impl BundleService {
    /// Placeholder.
    pub fn new(state: Arc<ApiState>) -> Self {
        Self { state }
    }
}

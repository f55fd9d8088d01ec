//! Placeholder until the Entry service lands.

use std::sync::Arc;

use super::ApiState;

/// Placeholder.
#[derive(Debug)]
pub struct EntryService {
    #[allow(dead_code, reason = "placeholder")]
    state: Arc<ApiState>,
}

impl EntryService {
    /// Placeholder.
    pub fn new(state: Arc<ApiState>) -> Self {
        Self { state }
    }
}

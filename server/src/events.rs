//! Change push. Each agent that keeps a `signet.sync.v1.Sync/Watch` stream open holds a
//! `watch` receiver of its own entries revision; a change to an entry bumps only the
//! revisions of the agents whose authorized set it touches. Bundle changes bump one shared
//! revision. Nothing polls: a change reaches the agent as soon as it is committed.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use signet_common::id::SpiffeId;
use tokio::sync::watch;

/// The notification hub.
#[derive(Debug)]
pub struct Events {
    agents: Mutex<HashMap<SpiffeId, watch::Sender<u64>>>,
    bundles: watch::Sender<u64>,
}

impl Default for Events {
    fn default() -> Self {
        Self::new()
    }
}

impl Events {
    /// A hub with no subscribers.
    pub fn new() -> Self {
        Self {
            agents: Mutex::new(HashMap::new()),
            bundles: watch::Sender::new(0),
        }
    }

    /// A receiver that changes whenever `agent`'s authorized entries change.
    pub fn subscribe_agent(&self, agent: &SpiffeId) -> watch::Receiver<u64> {
        let mut agents = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        agents.retain(|_, tx| tx.receiver_count() > 0);
        agents
            .entry(agent.clone())
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe()
    }

    /// A receiver that changes whenever any bundle changes.
    pub fn subscribe_bundles(&self) -> watch::Receiver<u64> {
        self.bundles.subscribe()
    }

    /// Tells these agents their entries changed.
    pub fn entries_changed<'a>(&self, agents: impl IntoIterator<Item = &'a SpiffeId>) {
        let subs = self.agents.lock().unwrap_or_else(PoisonError::into_inner);
        for agent in agents {
            if let Some(tx) = subs.get(agent) {
                tx.send_modify(|rev| *rev += 1);
            }
        }
    }

    /// Tells every subscriber the bundles changed.
    pub fn bundles_changed(&self) {
        self.bundles.send_modify(|rev| *rev += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signet_common::id::parse_id;

    #[tokio::test]
    async fn only_affected_agents_are_woken() {
        let events = Events::new();
        let a = parse_id("spiffe://example.org/spire/agent/jt/a").unwrap();
        let b = parse_id("spiffe://example.org/spire/agent/jt/b").unwrap();
        let mut ra = events.subscribe_agent(&a);
        let rb = events.subscribe_agent(&b);
        events.entries_changed([&a]);
        ra.changed().await.unwrap();
        assert_eq!(*ra.borrow(), 1);
        assert!(!rb.has_changed().unwrap());
    }

    #[tokio::test]
    async fn bundle_changes_reach_everyone() {
        let events = Events::new();
        let mut r = events.subscribe_bundles();
        events.bundles_changed();
        r.changed().await.unwrap();
        assert_eq!(*r.borrow(), 1);
    }
}

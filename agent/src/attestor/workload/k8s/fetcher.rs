//! One answer shared by concurrent attestations (the kubelet's pod list, a namespace's
//! labels): at most one request is in flight; callers waiting for it take its result, and
//! an answer (or failure) younger than the poll interval is reused by any caller that has
//! not seen it yet. A caller polling for a container the kubelet does not list yet asks for
//! a list newer than the one it saw, so every poll sees fresh data while a burst of
//! connections costs one call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::pods::PodList;

/// One fetch's outcome.
#[derive(Debug)]
pub struct Listing<T = PodList> {
    /// Increases with every fetch; 0 is "none seen yet".
    pub version: u64,
    /// The answer, or the fetch's error text.
    pub result: Result<Arc<T>, String>,
    done: Instant,
}

impl<T> Clone for Listing<T> {
    fn clone(&self) -> Self {
        Self {
            version: self.version,
            result: self.result.clone(),
            done: self.done,
        }
    }
}

/// Where answers come from (the kubelet's `/pods`, the API server; stand-ins in unit
/// tests).
pub trait Source<T = PodList>: Send + Sync + std::fmt::Debug {
    /// One request, parsed.
    fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<T, String>> + Send + '_>>;
}

/// The shared fetcher.
#[derive(Debug)]
pub struct Fetcher<T = PodList> {
    source: Arc<dyn Source<T>>,
    fresh_for: Duration,
    last: tokio::sync::Mutex<Option<Listing<T>>>,
    calls: AtomicU64,
}

impl<T> Fetcher<T> {
    /// Answers reused for `fresh_for` (the poll retry interval).
    pub fn new(source: Arc<dyn Source<T>>, fresh_for: Duration) -> Self {
        Self {
            source,
            fresh_for,
            last: tokio::sync::Mutex::new(None),
            calls: AtomicU64::new(0),
        }
    }

    /// How many times the source was called.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// A listing newer than version `seen`: one finished after `since` (the caller waited
    /// for it) or still fresh, else a new fetch.
    pub async fn newer_than(&self, seen: u64, since: Instant) -> Listing<T> {
        let mut last = self.last.lock().await;
        if let Some(l) = last.as_ref()
            && l.version > seen
            && (l.done >= since || l.done.elapsed() < self.fresh_for)
        {
            return l.clone();
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let result = self.source.fetch().await.map(Arc::new);
        let listing = Listing {
            version: last.as_ref().map_or(0, |l| l.version) + 1,
            result,
            done: Instant::now(),
        };
        *last = Some(listing.clone());
        listing
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[derive(Debug, Default)]
    struct Counting {
        calls: AtomicUsize,
        fail: bool,
    }

    impl Source for Counting {
        fn fetch(&self) -> Pin<Box<dyn Future<Output = Result<PodList, String>> + Send + '_>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                if self.fail {
                    Err("down".into())
                } else {
                    Ok(PodList::default())
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_costs_one_call_and_polls_see_fresh_lists() {
        for fail in [false, true] {
            let source = Arc::new(Counting {
                fail,
                ..Counting::default()
            });
            let fetcher = Arc::new(Fetcher::new(source.clone(), Duration::from_millis(500)));
            let now = Instant::now();
            let all = futures::future::join_all((0..100).map(|_| {
                let f = Arc::clone(&fetcher);
                async move { f.newer_than(0, now).await }
            }))
            .await;
            assert_eq!(source.calls.load(Ordering::SeqCst), 1, "fail={fail}");
            assert!(
                all.iter()
                    .all(|l| l.version == 1 && l.result.is_err() == fail)
            );

            // A newcomer within the interval reuses it; a caller that saw it gets a new one.
            tokio::time::advance(Duration::from_millis(100)).await;
            assert_eq!(fetcher.newer_than(0, Instant::now()).await.version, 1);
            assert_eq!(fetcher.newer_than(1, Instant::now()).await.version, 2);
            assert_eq!(source.calls.load(Ordering::SeqCst), 2);
            // Once stale, even a newcomer fetches.
            tokio::time::advance(Duration::from_secs(1)).await;
            assert_eq!(fetcher.newer_than(0, Instant::now()).await.version, 3);
            assert_eq!(fetcher.calls(), 3);
        }
    }
}

//! `LISTEN signet_changes` on a dedicated connection (not from the pool): every NOTIFY the
//! change-log trigger sends ticks a watch channel. The connection is remade after a failure
//! (with a growing pause, reset once LISTEN works again); while it is down, readers fall
//! back to polling the log, and each reconnect ticks so that they catch up at once.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use crate::datastore::postgres::connect::Target;

/// The first pause before remaking a lost LISTEN connection (doubling up to `MAX_PAUSE`,
/// back to this once LISTEN works again).
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Starts the listener; the receiver ticks on each notification (and once per reconnect,
/// since changes may have been missed meanwhile: the reader then catches up from the change
/// log). Stops when every receiver is gone.
pub(crate) fn spawn(target: Target) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    tokio::spawn(async move {
        let mut reconnect = Reconnect::default();
        while !tx.is_closed() {
            match listen(&target, &tx, &mut reconnect).await {
                Ok(()) if tx.is_closed() => return,
                Ok(()) => {
                    tracing::warn!(database = %target.describe, "LISTEN connection closed; polling the change log until it is back");
                }
                Err(error) => {
                    tracing::warn!(database = %target.describe, %error, "LISTEN for changes failed; polling the change log until it is back");
                }
            }
            tokio::time::sleep(reconnect.lost()).await;
        }
    });
    rx
}

/// The pacing of LISTEN reconnects.
#[derive(Debug)]
struct Reconnect {
    pause: Duration,
    lost: bool,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            pause: FIRST_PAUSE,
            lost: false,
        }
    }
}

impl Reconnect {
    /// LISTEN works (again): says so if it had been lost, and resets the pause.
    fn listening(&mut self, describe: &str) {
        if self.lost {
            tracing::info!(database = %describe, "LISTEN for changes resumed; catching up from the change log");
        }
        *self = Self::default();
    }

    /// The session ended: the pause before the next attempt.
    fn lost(&mut self) -> Duration {
        self.lost = true;
        let pause = self.pause;
        self.pause = (pause * 2).min(MAX_PAUSE);
        pause
    }
}

/// One LISTEN session; returns `Ok` when nobody listens any more.
async fn listen(
    target: &Target,
    tx: &watch::Sender<u64>,
    reconnect: &mut Reconnect,
) -> Result<(), tokio_postgres::Error> {
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(target.tls.clone());
    let (client, mut connection) = target.config.connect(tls).await?;
    let (notes_tx, mut notes) = tokio::sync::mpsc::unbounded_channel();
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let driver = tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => {
                    if notes_tx.send(()).is_err() {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    });
    client.batch_execute("LISTEN signet_changes").await?;
    reconnect.listening(&target.describe);
    tx.send_modify(|n| *n += 1);
    loop {
        tokio::select! {
            note = notes.recv() => match note {
                Some(()) => tx.send_modify(|n| *n += 1),
                None => break,
            },
            () = tx.closed() => {
                driver.abort();
                return Ok(());
            }
        }
    }
    drop(client);
    match driver.await {
        Ok(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

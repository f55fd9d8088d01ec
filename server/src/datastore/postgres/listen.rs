//! `LISTEN signet_changes` on a dedicated connection (not from the pool): every NOTIFY the
//! change-log trigger sends ticks a watch channel. The connection is remade after a failure
//! (with a growing pause); while it is down, readers fall back to polling the log.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use crate::datastore::postgres::connect::Target;

/// Starts the listener; the receiver ticks on each notification (and once per reconnect,
/// since changes may have been missed meanwhile). Stops when every receiver is gone.
pub(crate) fn spawn(target: Target) -> watch::Receiver<u64> {
    let (tx, rx) = watch::channel(0u64);
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(100);
        while !tx.is_closed() {
            match listen(&target, &tx).await {
                Ok(()) if tx.is_closed() => return,
                Ok(()) => {
                    tracing::warn!(database = %target.describe, "LISTEN connection closed; polling the change log until it is back");
                }
                Err(error) => {
                    tracing::warn!(database = %target.describe, %error, "LISTEN for changes failed; polling the change log until it is back");
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    });
    rx
}

/// One LISTEN session; returns `Ok` when nobody listens any more.
async fn listen(target: &Target, tx: &watch::Sender<u64>) -> Result<(), tokio_postgres::Error> {
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

//! The two background tasks of a joined fleet: the heartbeat, and the listener for the other
//! replicas' announcements. Both hold the fleet weakly and end soon after it is dropped.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;

use super::shared::Shared;

/// How long the listener waits before connecting again after losing its connection.
const RECONNECT: Duration = Duration::from_millis(250);

/// Every tick (or sooner, when kicked): tells Redis this replica is alive, learns the fleet's
/// epoch (a new one means Redis restarted and forgot everything: publish it all again), and
/// publishes the activity of the services that are due.
pub(crate) async fn heartbeat(shared: Weak<Shared>, kick: Arc<Notify>) {
    loop {
        let Some(tick) = shared.upgrade().map(|fleet| fleet.tick()) else {
            return;
        };
        let ticked = tokio::time::timeout(tick, kick.notified()).await.is_err();
        let Some(fleet) = shared.upgrade() else {
            return;
        };
        let mut republish = false;
        if ticked || !fleet.store.is_up() {
            match fleet.store.alive().await {
                Some(epoch) => {
                    let before = fleet.epoch.swap(epoch, Ordering::SeqCst);
                    if before != epoch {
                        if before != 0 {
                            tracing::info!(replica = %fleet.store.replica, "fleet: Redis has a new epoch (restarted); publishing activity again");
                        }
                        republish = true;
                    }
                }
                None => continue,
            }
        }
        let now = fleet.now();
        let touches = fleet
            .members()
            .into_iter()
            .filter_map(|member| member.due(now, republish).map(|at| (member, at)))
            .map(|(member, at)| async move { member.publish_activity(now, at).await });
        futures::future::join_all(touches).await;
    }
}

/// Listens to the fleet's channel and hands each announcement to its service; reconnects (and
/// so follows a Redis restart) on its own.
pub(crate) async fn listen(shared: Weak<Shared>) {
    loop {
        let Some((client, channel, timeout)) = shared.upgrade().map(|fleet| {
            (
                fleet.store.client.clone(),
                fleet.store.channel(),
                fleet.store.timeout,
            )
        }) else {
            return;
        };
        let connected = tokio::time::timeout(timeout.saturating_mul(2), async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        let Ok(Ok(pubsub)) = connected else {
            tokio::time::sleep(RECONNECT).await;
            continue;
        };
        let mut messages = pubsub.into_on_message();
        loop {
            // Wakes at least once a second to notice a dropped fleet.
            match tokio::time::timeout(Duration::from_secs(1), messages.next()).await {
                Ok(Some(message)) => {
                    let Some(fleet) = shared.upgrade() else {
                        return;
                    };
                    if let Ok(text) = std::str::from_utf8(message.get_payload_bytes()) {
                        dispatch(&fleet, text);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    if shared.strong_count() == 0 {
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

/// `kind replica service`: hands it to the service, unless this replica sent it.
fn dispatch(fleet: &Shared, text: &str) {
    let mut parts = text.splitn(3, ' ');
    let (Some(kind), Some(from), Some(service)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    if from == fleet.store.replica {
        return;
    }
    if let Some(member) = fleet.member(service) {
        member.on_message(kind, from);
    }
}

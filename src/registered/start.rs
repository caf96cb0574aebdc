//! A start: `on_down` run once per cold start, shared by everyone who asks while it runs,
//! after the service's dependencies are up (see `dependencies.rs`), and under the fleet's
//! lease in a fleet.

use std::future::Future;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::{BoxFuture, Either, select};

use super::call_off::{StartCalledOff, Ticket};
use super::dependencies::Awaited;
use super::{Asker, Registered, runs, start_watch};
use crate::error::{MonitorError, SharedError};
use crate::lifecycle::{Event, ServiceState, Stamp};
use crate::trigger::run_bounded;

impl Registered {
    /// A request asks for the backend to start: see [`start_for`](Self::start_for).
    pub(crate) fn wake(&self) -> impl Future<Output = Result<(), SharedError>> + Send + 'static {
        self.start_for(Asker::Request)
    }

    /// Asks for the backend to start: runs `on_down` if it is down (one run per cold start,
    /// shared by everyone who asks while it runs), remembers the wish if it is stopping, and
    /// does nothing more if it is starting or up. Fails with `on_down`'s own failure, or with
    /// [`StartPaused`] while the pause after a series of failed starts lasts (see `backoff`).
    /// Once held requests are released (the server is shutting down), a request's start fails
    /// with [`ShuttingDown`] instead, before anything runs: every start a request can set off
    /// comes here, so this is the one place that says no.
    pub(crate) fn start_for(
        &self,
        asker: Asker,
    ) -> impl Future<Output = Result<(), SharedError>> + Send + 'static {
        let joined = self.waking.join_or_start(|| {
            let on_down = self.service.on_down.clone()?;
            if asker == Asker::Request && self.is_released() {
                return self.start_refused();
            }
            if self.state() == ServiceState::Down {
                if let Some((paused, first)) = self.backoff.pausing() {
                    // Once per pause at info: why requests get no start must be explained,
                    // a stream of requests must not fill the log.
                    if first {
                        tracing::info!(service = %self.name, "{}: {paused}", self.name);
                    } else {
                        tracing::debug!(service = %self.name, "{}: {paused}", self.name);
                    }
                    let paused: SharedError = Arc::new(paused);
                    return Some(futures::future::ready(Err(paused)).boxed());
                }
            }
            // Before the transition, whose poller must not take a crashed program's last
            // answers for the backend up.
            let ending = self.last_run_ending(&on_down);
            // Counted before the transition, as a stop is: an idle stop that follows it (the
            // backend answering before on_down returns) sees it. Its ticket too: an operator's
            // stop that follows it calls it off if on_down has not begun.
            let (transition, (running, ticket)) =
                self.wake_after_stop.wake(&self.lifecycle, asker, || {
                    (
                        runs::TriggerRun::new(&self.start_runs),
                        self.call_off.ticket(),
                    )
                })?;
            self.after(transition);
            let run = self.run_on_down(
                on_down,
                Some(transition.began),
                (running, ending),
                ticket,
                asker,
            );
            Some(self.fleet_wake(asker, run))
        });
        let name = Arc::clone(&self.name);
        async move {
            match joined {
                Ok(Some(run)) => run.await,
                Ok(None) => Ok(()),
                Err(_) => Err(Arc::new(MonitorError::NoRuntime(name.to_string())) as SharedError),
            }
        }
    }

    /// Fleet hook: in a fleet, `on_down` runs only under the fleet's lease (one start across
    /// the replicas); otherwise `run` is returned as it is.
    fn fleet_wake(
        &self,
        #[cfg_attr(not(feature = "fleet"), allow(unused_variables))] asker: Asker,
        run: BoxFuture<'static, Result<(), SharedError>>,
    ) -> BoxFuture<'static, Result<(), SharedError>> {
        #[cfg(feature = "fleet")]
        if let Some(member) = self.fleet.get() {
            return member.wake(asker, run);
        }
        run
    }

    /// A run of `on_down` (not started yet), for a fleet replica taking over a start: the
    /// start it belongs to is the Starting stay now on, watched as a local one is. None if
    /// the start has ended meanwhile (an "up" heard, or its timeout, while the replica looked
    /// whether the backend answers): it is not run for no start.
    #[cfg(feature = "fleet")]
    pub(crate) fn on_down_run(&self) -> Option<BoxFuture<'static, Result<(), SharedError>>> {
        let on_down = self.service.on_down.clone()?;
        let ticket = self.call_off.ticket();
        let starting =
            Some(self.lifecycle.stamp()).filter(|s| s.state() == ServiceState::Starting)?;
        let running = runs::TriggerRun::new(&self.start_runs);
        Some(self.run_on_down(
            on_down,
            Some(starting),
            (running, None),
            ticket,
            Asker::Request,
        ))
    }

    /// Runs `on_down` for the start `starting` names (when known, its end is watched for),
    /// counted in `start_runs` by `running` until it ends, once its dependencies, started for
    /// `asker`, are up, and what it started last has ended (`ending`, up to a bound). Its
    /// failure ends that start only (none when not known). Called off (see `call_off`) until
    /// `on_down` begins: it then ends at once, with [`StartCalledOff`].
    fn run_on_down(
        &self,
        on_down: Arc<dyn crate::Trigger>,
        starting: Option<Stamp>,
        (running, ending): (runs::TriggerRun, Option<start_watch::LastRunEnding>),
        mut ticket: Ticket,
        asker: Asker,
    ) -> BoxFuture<'static, Result<(), SharedError>> {
        let me = self.me.upgrade();
        let timeout = self.service.trigger_timeout;
        let dependencies = self.dependencies.come_up(&self.name, asker);
        async move {
            let _running = running;
            let Some(me) = me else { return Ok(()) };
            me.stats.wake(&me.name);
            let unfinished = start_watch::UnfinishedStart::new(&me, starting);
            // First, and bounded: the poller does not probe until it is over. An operator's
            // stop that calls the start off meanwhile (the backend found up) ends it at once:
            // it waits for this start at most the trigger timeout, which may be shorter.
            let (mut called_off, mut waited) = (false, false);
            if let Some(ending) = ending {
                let (ended, off) = (std::pin::pin!(ending.wait()), std::pin::pin!(ticket.wait()));
                called_off = matches!(select(ended, off).await, Either::Right(_));
                waited = true;
            }
            // Its Starting stay may have ended during that wait (the backend found up, its
            // start timeout): no on_down for a start that is over.
            let ended = waited && starting.is_some_and(|start| me.lifecycle.stamp() != start);
            let awaited = match dependencies {
                _ if called_off => Awaited::CalledOff,
                _ if ended => me.start_ended(),
                Some(up) => me.await_dependencies(up, starting, &mut ticket).await,
                None => Awaited::Up,
            };
            // The last look, right before on_down: a stop that calls starts off after it
            // waits for this on_down instead.
            let awaited = match awaited {
                Awaited::Up if ticket.called_off() => Awaited::CalledOff,
                awaited => awaited,
            };
            let (result, why) = match awaited {
                // Its Starting stay is over (the stop began from Up): ending it below changes
                // nothing, and no failed start is counted.
                Awaited::CalledOff => {
                    tracing::info!(service = %me.name, "a stop of {} called off its start before on_down ran", me.name);
                    (Err(Arc::new(StartCalledOff) as SharedError), "a stop called it off")
                }
                Awaited::Up => (
                    run_bounded(&on_down, timeout, &me.stats, &me.name, "on_down").await,
                    "on_down failed",
                ),
                Awaited::StartEnded(result) => {
                    unfinished.finished();
                    return result;
                }
                Awaited::Down(down) => (Err(down), "a dependency did not come up"),
            };
            unfinished.finished();
            match (&result, starting) {
                // Only the start this run was made for: a newer one (begun while this ran, as
                // a fleet replica's takeover runs beside the shared run) is not its to end.
                (Err(_), Some(starting)) => {
                    if let Some(down) = me.lifecycle.apply_to(starting, Event::WakeFailed) {
                        me.after_because(down, why);
                    }
                }
                (Err(_), None) => {}
                (Ok(()), Some(starting)) => me.watch_start(starting, &on_down),
                (Ok(()), None) => {}
            }
            result
        }
        .boxed()
    }
}

#[cfg(all(test, not(loom), feature = "fleet"))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::sync::Notify;

    use super::*;
    use crate::{BoxError, MonitoredService, Url, trigger};

    /// A start taken over as a fleet replica does (`on_down_run`, beside the shared run) whose
    /// `on_down` fails after a newer start has begun: the newer start goes on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_on_down_ends_only_the_start_it_was_run_for() {
        // A real loopback port, bound but not listening: probes find the backend down, so
        // Starting lasts (kept bound, no connect can get it as its own port and connect to
        // itself).
        let closed = tokio::net::TcpSocket::new_v4().unwrap();
        closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let url = Url::parse(&format!("http://{}/", closed.local_addr().unwrap())).unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let (began, fail) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let (r, b, f) = (runs.clone(), began.clone(), fail.clone());
        let on_down = trigger::from_fn(move || {
            let older = r.fetch_add(1, Ordering::SeqCst) == 0;
            let f = f.clone();
            if older {
                b.notify_one();
            }
            async move {
                if older {
                    f.notified().await;
                    return Err::<(), BoxError>("the older start's on_down fails".into());
                }
                Ok(())
            }
        });
        let service = MonitoredService::new(url, Duration::from_secs(60)).on_down(on_down);
        let registered = super::Registered::new("app".into(), service);

        registered.apply(Event::Wake).unwrap();
        let older = tokio::spawn(registered.on_down_run().unwrap());
        tokio::time::timeout(Duration::from_secs(5), began.notified())
            .await
            .expect("the older on_down never began");
        // The backend answered and went again: the older start is over, and a newer one
        // begins (its on_down returning at once) while the older one's on_down still runs.
        registered.set_status_up();
        registered.set_status_down();
        registered.wake().await.unwrap();
        assert_eq!(registered.state(), ServiceState::Starting);
        let newer = registered.lifecycle.stamp();

        fail.notify_one();
        let failed = tokio::time::timeout(Duration::from_secs(5), older).await;
        assert!(
            failed
                .expect("the older on_down never ended")
                .unwrap()
                .is_err()
        );
        assert_eq!(
            registered.lifecycle.stamp(),
            newer,
            "the older start's failure ended the newer start ({})",
            registered.state()
        );
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}

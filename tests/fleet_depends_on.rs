//! Fleet mode with `depends_on`: an app that needs a database, on two replicas sharing a real
//! Redis.
#![cfg(feature = "fleet")]

mod fleet_support;

use std::sync::Arc;
use std::time::Duration;

use fleet_support::*;
use tower_monitor::{MinMonitor, MonitoredService, ServiceState};

/// A replica with "db" and "app" (which depends on "db"), joined to the fleet `prefix`.
fn replica_with_db(
    redis: &RedisServer,
    prefix: &str,
    id: &str,
    db: MonitoredService,
    app: MonitoredService,
) -> Arc<MinMonitor> {
    let monitor = Arc::new(MinMonitor::new());
    monitor.add("db", db).unwrap();
    monitor.add("app", app.depends_on("db")).unwrap();
    monitor.join_fleet(fleet(&redis.url(), prefix, id)).unwrap();
    monitor
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_waits_out_the_leaders_slow_dependency_before_its_own_start_timeout() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    // The database takes 2 s to boot, well within its own start timeout; the app's own start
    // (200 ms) is well within its 1 s start timeout, which the database's boot is not.
    let db = Backend::new(Duration::from_secs(2)).await;
    let app = Backend::new(Duration::from_millis(200)).await;
    let idle = Duration::from_secs(60);
    let db_service = || service(&db, idle, Duration::ZERO).start_timeout(Duration::from_secs(10));
    let app_service = || service(&app, idle, Duration::ZERO).start_timeout(Duration::from_secs(1));
    let a = replica_with_db(&redis, "deps", "a", db_service(), app_service());
    let b = replica_with_db(&redis, "deps", "b", db_service(), app_service());
    redis.wait_for_listeners("deps", 2).await;

    // a leads the start (and the database's); b's request comes while a holds the lease.
    let leader = {
        let a = Arc::clone(&a);
        tokio::spawn(async move { request(&a, HOLD, 1).await })
    };
    assert!(
        eventually(Duration::from_secs(5), || db.starts() == 1).await,
        "a started the database"
    );
    let follower = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { request(&b, HOLD, 1).await })
    };
    // b gives up at its start timeout by going Down (its held request then asks again, and
    // is forwarded all the same): watched for until b is up, bounded by the hold.
    let gave_up = {
        let b = Arc::clone(&b);
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + HOLD.unwrap();
            let mut starting = false;
            while tokio::time::Instant::now() < deadline {
                match state(&b) {
                    ServiceState::Starting => starting = true,
                    ServiceState::Down if starting => return true,
                    ServiceState::Up => return false,
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        })
    };
    assert_eq!(leader.await.unwrap(), 200, "a's held request is forwarded");
    assert_eq!(
        follower.await.unwrap(),
        200,
        "b's held request is forwarded once a's start ends, not given up at b's start timeout"
    );
    assert!(
        !gave_up.await.unwrap(),
        "b gave the app's start up while a's went on"
    );
    assert_eq!((db.starts(), app.starts()), (1, 1), "one start of each");
    assert_eq!(state(&b), ServiceState::Up);
}

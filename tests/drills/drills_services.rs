//! Drills 2, 3, 4 and 10: the services under the system fail.
use sqlx::Connection;
use std::time::{Duration, Instant};

use crate::check::{Expect, Report};
use crate::procs::Topology;
use crate::services::Services;
use crate::{broken, Run, Settings};

/// NATS killed -9 at 30 % of the load; the same server (same store
/// directory) starts again after the outage.
pub async fn nats(services: &mut Services, settings: &Settings) -> Report {
    let id = "2";
    let mut run = match Run::start(services, id, Topology::ONE_EACH).await {
        Ok(run) => run,
        Err(e) => return broken(id, e),
    };
    let load = run.load(settings.spec());
    run.until(settings.at(0.3)).await;
    services.nats.process.kill9();
    let killed_at = run.secs();
    tokio::time::sleep(settings.outage()).await;
    match services.nats.start().await {
        Ok(()) => run.report.note(format!(
            "NATS {} killed -9 at {killed_at:.1} s, back {:.1} s later{}",
            services.nats.version,
            run.secs() - killed_at,
            if services.nats.sync_always {
                " (sync_interval: always)"
            } else {
                " (this server predates sync_interval)"
            }
        )),
        Err(e) => run.report.fail(format!("NATS did not come back: {e}")),
    }
    let outcome = load.await.expect("load task");
    run.finish(outcome, &Expect::default()).await
}

/// Postgres stopped with `-m immediate` (no checkpoint, crash recovery at
/// the next start) at 30 % of the load, started again after the outage.
pub async fn postgres(services: &mut Services, settings: &Settings) -> Report {
    let id = "3";
    let mut run = match Run::start(services, id, Topology::ONE_EACH).await {
        Ok(run) => run,
        Err(e) => return broken(id, e),
    };
    let load = run.load(settings.spec());
    run.until(settings.at(0.3)).await;
    let stopped_at = run.secs();
    if let Err(e) = tokio::task::block_in_place(|| services.pg.stop("immediate")) {
        run.report.fail(e);
    }
    tokio::time::sleep(settings.outage()).await;
    match tokio::task::block_in_place(|| services.pg.start()) {
        Ok(()) => run.report.note(format!(
            "Postgres stopped (immediate) at {stopped_at:.1} s, accepting again {:.1} s later",
            run.secs() - stopped_at
        )),
        Err(e) => run.report.fail(format!("Postgres did not come back: {e}")),
    }
    let outcome = load.await.expect("load task");
    run.finish(outcome, &Expect::default()).await
}

/// The S3 server stopped (killed) during a photo-heavy load, started again
/// after the outage.
pub async fn s3(services: &mut Services, settings: &Settings) -> Report {
    let id = "4";
    let mut run = match Run::start(services, id, Topology::ONE_EACH).await {
        Ok(run) => run,
        Err(e) => return broken(id, e),
    };
    let mut spec = settings.spec();
    spec.photo_share = 0.6;
    spec.update_share = 0.2;
    spec.option2_share = 0.5;
    let load = run.load(spec);
    run.until(settings.at(0.3)).await;
    services.s3.process.kill9();
    let stopped_at = run.secs();
    tokio::time::sleep(settings.outage()).await;
    match services.s3.start().await {
        Ok(()) => run.report.note(format!(
            "S3 stopped at {stopped_at:.1} s, back {:.1} s later",
            run.secs() - stopped_at
        )),
        Err(e) => run.report.fail(format!("S3 did not come back: {e}")),
    }
    let outcome = load.await.expect("load task");
    let photos = outcome.count(|a| matches!(a, crate::load::Ack::Photo { .. }));
    run.report
        .note(format!("{photos} photo uploads acknowledged"));
    run.finish(outcome, &Expect::default()).await
}

/// A session left idle in a transaction that holds a row lock on the
/// customers view and an EXCLUSIVE lock on the events table (reads pass,
/// inserts wait). The database has `idle_in_transaction_session_timeout`,
/// so Postgres ends that session; until then writers wait at most crm's
/// `lock_timeout` and answer 503, and reads keep being served.
pub async fn idle_in_transaction(services: &mut Services, settings: &Settings) -> Report {
    let id = "10";
    // A customer write waits up to 5 s for its (stalled) view before it
    // answers, and its next write waits up to 5 s (lock_timeout) for the
    // lock: the lock must outlast both, with room to spare, for every client
    // to meet the lock timeout whatever the timing.
    let idle_timeout = 13;
    let mut run = match Run::start(services, id, Topology::ONE_EACH).await {
        Ok(run) => run,
        Err(e) => return broken(id, e),
    };
    let database = run
        .stack
        .db_url
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let setting = async {
        let pool = run.stack.pool().await?;
        sqlx::query(&format!(
            "ALTER DATABASE {database} SET idle_in_transaction_session_timeout = '{idle_timeout}s'"
        ))
        .execute(&pool)
        .await
        .map_err(|e| e.to_string())?;
        pool.close().await;
        Ok::<_, String>(())
    };
    if let Err(e) = setting.await {
        return broken(id, e);
    }
    let mut spec = settings.spec();
    // Long enough to see the lock, the timeouts and the recovery.
    spec.duration = settings.load().max(Duration::from_secs(idle_timeout + 6));
    let begin = spec.duration.mul_f64(0.2);
    let load = run.load(spec);
    run.until(begin).await;

    let rogue = async {
        let mut conn = sqlx::PgConnection::connect(&run.stack.db_url)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query("BEGIN")
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query("SELECT id FROM customers LIMIT 1 FOR UPDATE")
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((conn, pid))
    };
    let (_conn, pid) = match rogue.await {
        Ok(rogue) => rogue,
        Err(e) => {
            run.report
                .fail(format!("could not open the idle transaction: {e}"));
            let outcome = load.await.expect("load task");
            return run.finish(outcome, &Expect::default()).await;
        }
    };
    let locked_at = Instant::now();
    let since = run.secs();
    // Reads go on while the lock is held. The session is watched from
    // another connection: anything sent on it would restart its idle timer.
    let watch = match run.stack.pool().await {
        Ok(pool) => pool,
        Err(e) => return broken(id, e),
    };
    let http = reqwest::Client::new();
    let (mut reads_ok, mut reads) = (0, 0);
    let mut ended = None;
    while locked_at.elapsed() < Duration::from_secs(idle_timeout + 10) {
        reads += 1;
        let answer = http
            .get(format!("{}/v1/customers?limit=5", run.target.bases[0]))
            .bearer_auth(&run.target.token)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        if answer.is_ok_and(|r| r.status() == 200) {
            reads_ok += 1;
        }
        let alive: Result<i64, _> =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1")
                .bind(pid)
                .fetch_one(&watch)
                .await;
        if matches!(alive, Ok(0)) {
            ended = Some(locked_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    match ended {
        Some(after) => run.report.note(format!(
            "idle transaction (row lock on customers + EXCLUSIVE on events) from {since:.1} s; \
             Postgres ended it after {:.1} s (idle_in_transaction_session_timeout = {idle_timeout}s); \
             reads while locked: {reads_ok}/{reads} answered 200",
            after.as_secs_f64()
        )),
        None => run
            .report
            .fail("the idle session was never ended by idle_in_transaction_session_timeout"),
    }
    if reads_ok < reads {
        run.report.fail(format!(
            "only {reads_ok} of {reads} reads answered while the lock was held"
        ));
    }
    watch.close().await;
    let outcome = load.await.expect("load task");
    if outcome.tally.s503 == 0 {
        run.report
            .fail("no writer timed out on the lock (expected 503s)");
    }
    run.finish(outcome, &Expect::default()).await
}

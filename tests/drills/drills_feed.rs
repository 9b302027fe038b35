//! Drills 5, 7, 8 and 9: the event feed's own hard cases.
use serde_json::json;
use sqlx::{Connection, PgConnection};
use std::time::{Duration, Instant};

use crate::check::{Expect, Report};
use crate::load::{Ack, Target};
use crate::procs::Topology;
use crate::services::Services;
use crate::{broken, Run, Settings};

/// Inserts a `CustomerRegistered` for a new customer the way postgres-es
/// does, on `conn` (inside its transaction, if one is open).
async fn insert_customer(
    conn: &mut PgConnection,
    target: &Target,
    id: &str,
    payload: serde_json::Value,
) -> Result<(), String> {
    let metadata = json!({
        "company_id": target.company_id,
        "user_id": target.user_id,
        "correlation_id": uuid::Uuid::now_v7().to_string(),
        "occurred_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    });
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('customer', $1, 1, 'CustomerRegistered', '2.0', $2, $3)",
    )
    .bind(id)
    .bind(payload)
    .bind(metadata)
    .execute(conn)
    .await
    .map(drop)
    .map_err(|e| format!("insert event: {e}"))
}

/// The gap case, on the running relay: a transaction inserts an event and
/// stays open while the load's later transactions commit. The relay must
/// not pass it (its checkpoint stays below the open transaction) and must
/// publish it once it commits.
pub async fn gap(services: &mut Services, settings: &Settings) -> Report {
    let id = "5";
    let mut run = match Run::start(services, id, Topology::ONE_EACH).await {
        Ok(run) => run,
        Err(e) => return broken(id, e),
    };
    let load = run.load(settings.spec());
    run.until(settings.at(0.3)).await;
    let held = uuid::Uuid::now_v7().to_string();
    let hold = settings.outage().max(Duration::from_secs(3));
    let held_open = async {
        let mut conn = PgConnection::connect(&run.stack.db_url)
            .await
            .map_err(|e| e.to_string())?;
        let watch = run.stack.pool().await?;
        sqlx::query("BEGIN")
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let payload = json!({"CustomerRegistered": {
            "company_id": run.target.company_id, "name": "Held", "surname": format!("held-{held}"),
            "email": null, "phone": null, "notes": "inserted by a transaction held open", "by": run.target.user_id
        }});
        insert_customer(&mut conn, &run.target, &held, payload).await?;
        let xid: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let xid: u64 = xid.parse().map_err(|_| "xid".to_owned())?;
        // While it is open, later transactions commit and the relay must
        // stay below it.
        let opened = Instant::now();
        let (mut passed, mut behind) = (false, 0i64);
        while opened.elapsed() < hold {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let checkpoint: Option<String> = sqlx::query_scalar(
                "SELECT transaction_id FROM relay_checkpoint WHERE name = 'main'",
            )
            .fetch_optional(&watch)
            .await
            .map_err(|e| e.to_string())?;
            if checkpoint
                .and_then(|c| c.parse::<u64>().ok())
                .is_some_and(|c| c >= xid)
            {
                passed = true;
            }
            behind = sqlx::query_scalar(
                "SELECT count(*) FROM events WHERE transaction_id > $1::text::xid8",
            )
            .bind(xid.to_string())
            .fetch_one(&watch)
            .await
            .map_err(|e| e.to_string())?;
        }
        sqlx::query("COMMIT")
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        watch.close().await;
        Ok::<_, String>((passed, behind, opened.elapsed()))
    };
    let mut expect = Expect::default();
    match held_open.await {
        Ok((passed, behind, open)) => {
            expect.extra_customers.push(held.clone());
            run.report.note(format!(
                "a transaction inserting customer {held} held open {:.1} s from {:.1} s while {behind} later events committed",
                open.as_secs_f64(),
                run.secs() - open.as_secs_f64()
            ));
            if passed {
                run.report
                    .fail("the relay's checkpoint moved past the open transaction (gap skipped)");
            } else {
                run.report
                    .note("the relay waited at the open transaction, then published it");
            }
        }
        Err(e) => run.report.fail(format!("holding the transaction: {e}")),
    }
    let outcome = load.await.expect("load task");
    run.finish(outcome, &expect).await
}

/// A poison event: an undecodable `CustomerRegistered` committed to the
/// store at 30 % of the load. The customers view parks it (visible in `crm
/// projections status`) and everything else keeps flowing; afterwards a
/// rebuild of the customers view must still work.
pub async fn poison(services: &mut Services, settings: &Settings) -> Report {
    let id = "7";
    let mut run = match Run::start(services, id, Topology::ONE_EACH).await {
        Ok(run) => run,
        Err(e) => return broken(id, e),
    };
    let load = run.load(settings.spec());
    run.until(settings.at(0.3)).await;
    let poisoned = uuid::Uuid::now_v7().to_string();
    let inserted = async {
        let mut conn = PgConnection::connect(&run.stack.db_url)
            .await
            .map_err(|e| e.to_string())?;
        // Valid JSON, but not a CustomerRegistered any handler can read.
        let payload = json!({"CustomerRegistered": {"name": 42, "surname": ["not", "text"]}});
        insert_customer(&mut conn, &run.target, &poisoned, payload).await
    };
    if let Err(e) = inserted.await {
        return broken(id, e);
    }
    run.report.note(format!(
        "poison event customer:{poisoned}:1 committed at {:.1} s",
        run.secs()
    ));
    let outcome = load.await.expect("load task");

    let mut expect = Expect::default();
    expect.poisoned.insert(poisoned.clone());
    expect.parked = 1;
    // Parked and visible to operators.
    let started = Instant::now();
    let mut status = String::new();
    while started.elapsed() < Duration::from_secs(60) {
        match run.stack.crm_command(&["projections", "status"]).await {
            Ok(out) => status = out,
            Err(e) => status = e,
        }
        if status.contains(&poisoned) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if status.contains(&format!("customer:{poisoned}:1"))
        && status.contains("parked poison events: 1")
    {
        run.report.note(format!(
            "`crm projections status` showed it parked {:.1} s after the load",
            started.elapsed().as_secs_f64()
        ));
    } else {
        run.report.fail(format!(
            "`crm projections status` does not show the parked event: {status}"
        ));
    }
    // A rebuild must get past it too (and park it, not stop).
    match run
        .stack
        .crm_command(&["projections", "rebuild", "customers"])
        .await
    {
        Ok(_) => run
            .report
            .note("`crm projections rebuild customers` completed past it"),
        Err(e) => run
            .report
            .fail(format!("rebuild with a poison event in the store: {e}")),
    }
    run.finish(outcome, &expect).await
}

/// `crm projections rebuild all` while the write load runs; the swapped
/// views must equal the store (the checker folds every customer).
pub async fn rebuild(services: &mut Services, settings: &Settings) -> Report {
    let id = "8";
    let mut run = match Run::start(services, id, Topology::ONE_EACH).await {
        Ok(run) => run,
        Err(e) => return broken(id, e),
    };
    let load = run.load(settings.spec());
    let mut rounds = 0;
    // Rebuild again and again while the load lasts (at least once).
    run.until(settings.at(0.3)).await;
    while rounds == 0 || run.started.elapsed() < settings.at(0.8) {
        let started = Instant::now();
        let at = run.secs();
        match run
            .stack
            .crm_command(&["projections", "rebuild", "all"])
            .await
        {
            Ok(out) => {
                rounds += 1;
                let events = out
                    .lines()
                    .find(|l| l.starts_with("rebuilt customers"))
                    .unwrap_or_default()
                    .to_owned();
                if rounds == 1 {
                    run.report.note(format!(
                        "rebuild all from {at:.1} s took {:.1} s ({events})",
                        started.elapsed().as_secs_f64()
                    ));
                }
            }
            Err(e) => {
                run.report
                    .fail(format!("rebuild all under load failed: {e}"));
                break;
            }
        }
    }
    run.report
        .note(format!("{rounds} rebuilds of every view during the load"));
    let outcome = load.await.expect("load task");
    run.finish(outcome, &Expect::default()).await
}

/// Clients with short timeouts that retry every write after a timeout:
/// creates and uploads with the same `Idempotency-Key`, updates with the
/// same `If-Match`.
pub async fn retries(services: &mut Services, settings: &Settings) -> Report {
    let id = "9";
    let mut run = match Run::start(services, id, Topology::ONE_EACH).await {
        Ok(run) => run,
        Err(e) => return broken(id, e),
    };
    let mut spec = settings.spec();
    spec.retry_all = true;
    spec.timeout = Duration::from_millis(15);
    spec.photo_share = 0.15;
    // If-Match needs the client to be each customer's only writer: no
    // policy attaching photos behind its back.
    spec.option2_share = 0.0;
    let load = run.load(spec);
    let outcome = load.await.expect("load task");
    let inferred = outcome.count(|a| matches!(a, Ack::Update { inferred: true, .. }));
    run.report.note(format!(
        "{} requests for {} writes ({} timed out and were retried; {inferred} updates confirmed by 412 after a timed-out attempt)",
        outcome.tally.requests,
        outcome.acks.len(),
        outcome.tally.timeouts,
    ));
    run.finish(outcome, &Expect::default()).await
}

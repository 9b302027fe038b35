//! Writes reply without waiting for the views, so the views' lag is bounded
//! explicitly: past the bound, writes answer `503` naming the lagging view,
//! and they are accepted again once it catches up, with nothing lost.
mod common;

use common::{spawn_app_with, Stack};
use serde_json::json;
use sqlx::Connection;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_stalled_view_refuses_writes_naming_it_until_it_catches_up() {
    let mut app = spawn_app_with(
        Stack::Full,
        &[("CRM_LAG_BOUND_EVENTS", "5"), ("CRM_LAG_BOUND_SECS", "600")],
    )
    .await;
    // Each write's reply is what is checked here, not its visibility.
    app.settle_writes = false;
    let admin = app.signup("Stalled").await;
    let url = app.database_url.clone().expect("full stack database");
    let mut holder = sqlx::PgConnection::connect(&url).await.expect("connect");
    // The customers view's workers block on this lock: the view stalls.
    let mut stall = holder.begin().await.expect("begin");
    sqlx::query("LOCK TABLE customers IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *stall)
        .await
        .expect("lock the customers view");

    let mut accepted = 0;
    let started = Instant::now();
    let refused = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "writes were never refused while the view stalled"
        );
        let body = json!({"name": "Stall", "surname": format!("N{accepted}")});
        let reply = app.post("/v1/customers", &admin.token, body).await;
        match reply.status {
            201 => accepted += 1,
            503 => break reply,
            other => panic!("unexpected {other}: {}", reply.text()),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        accepted > 5,
        "refused before the bound: {accepted} accepted"
    );
    refused.problem(503, "a write past the lag bound");
    assert!(
        refused.json["detail"]
            .as_str()
            .is_some_and(|d| d.contains("customers view")),
        "the problem names the view: {}",
        refused.json
    );
    assert!(
        refused.header("retry-after").is_some(),
        "Retry-After is set"
    );
    // Reads still answer, and writes that do not fall past it neither.
    app.get("/v1/company", &admin.token)
        .await
        .expect(200, "a read while the view stalls");

    stall.rollback().await.expect("release the view");
    let started = Instant::now();
    let last = loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "writes were still refused after the view could catch up"
        );
        let body = json!({"name": "After", "surname": "Stall"});
        let reply = app.post("/v1/customers", &admin.token, body).await;
        if reply.status == 201 {
            break reply;
        }
        assert_eq!(reply.status, 503, "{}", reply.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let token = last.consistency_token("the write after the stall");
    let list = app
        .get_after("/v1/customers?limit=200", &admin.token, &token)
        .await;
    list.expect(200, "the list after the stall");
    let items = list.json["items"].as_array().expect("items");
    assert_eq!(
        items.len(),
        accepted + 1,
        "every accepted write is in the view"
    );
}

/// Authentication reads the users view, which may lag (a bus failover): a
/// session issued from the write's own events is honoured meanwhile, from
/// the event log, instead of being refused as revoked.
#[tokio::test]
async fn a_session_ahead_of_the_users_view_is_honoured() {
    let app = spawn_app_with(Stack::Full, &[]).await;
    app.signup("Warm").await;
    let url = app.database_url.clone().expect("full stack database");
    let mut holder = sqlx::PgConnection::connect(&url).await.expect("connect");
    // Reads go on; the users view's workers cannot write: it lags.
    let mut stall = holder.begin().await.expect("begin");
    sqlx::query("LOCK TABLE users IN EXCLUSIVE MODE")
        .execute(&mut *stall)
        .await
        .expect("lock the users view");
    let fresh = app.signup("Ahead of the view").await;
    let reply = app.get("/v1/customers", &fresh.token).await;
    reply.expect(200, "a new admin's token while the users view lags");
    let company = app.get("/v1/company", &fresh.token).await;
    company.expect(200, "the company of that token");
    stall.rollback().await.expect("release the users view");
}

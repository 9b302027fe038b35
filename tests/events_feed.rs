//! `GET /v1/events`: the company's public events in commit order, resumable
//! from a cursor, filtered by type, long-polled; never another company's.
//! On both stacks.
mod common;

use common::{spawn_app, Stack, Tenant, TestApp};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn all_events(app: &TestApp, tenant: &Tenant, query: &str) -> (Vec<Value>, String) {
    let page = app
        .get(&format!("/v1/events?limit=200{query}"), &tenant.token)
        .await;
    page.expect(200, "the event feed");
    let cursor = page.json["next_cursor"]
        .as_str()
        .expect("next_cursor")
        .to_owned();
    (
        page.json["items"].as_array().expect("items").clone(),
        cursor,
    )
}

fn types(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?"))
        .collect()
}

async fn feed(stack: Stack) {
    let app = spawn_app(stack).await;
    let a = app.signup("Feed A").await;
    let b = app.signup("Feed B").await;
    let customer = app
        .create_customer(&a.token, json!({"name": "Ada", "surname": "Lovelace"}))
        .await;
    let id = customer["id"].as_str().expect("id").to_owned();
    app.patch(
        &format!("/v1/customers/{id}"),
        &a.token,
        json!({"surname": "Byron"}),
    )
    .await
    .expect(200, "update");
    app.delete(&format!("/v1/customers/{id}"), &a.token)
        .await
        .expect(204, "delete");
    app.post(&format!("/v1/customers/{id}/restore"), &a.token, json!({}))
        .await
        .expect(200, "restore");
    app.patch("/v1/company", &a.token, json!({"name": "Feed A2"}))
        .await
        .expect(200, "rename");
    app.create_customer(&b.token, json!({"name": "Bob", "surname": "B"}))
        .await;

    let (items, cursor) = all_events(&app, &a, "").await;
    assert_eq!(
        types(&items),
        vec![
            "user.created",
            "customer.created",
            "customer.updated",
            "customer.deleted",
            "customer.restored",
            "company.renamed"
        ]
    );
    for event in &items {
        assert_eq!(
            event["company_id"],
            json!(a.company_id),
            "only A's events: {event}"
        );
        assert_eq!(event["actor"]["user_id"], json!(a.user_id));
        assert!(common::is_rfc3339_utc(
            event["occurred_at"].as_str().unwrap_or("")
        ));
        assert!(event["id"].as_str().is_some_and(|s| s.len() == 36));
    }
    // Each event shows the resource as that change left it.
    assert_eq!(items[1]["data"]["surname"], json!("Lovelace"));
    assert_eq!(items[2]["data"]["surname"], json!("Byron"));
    assert_eq!(items[2]["changed_fields"], json!(["surname"]));
    assert!(items[3]["data"]["deleted_at"].is_string());
    assert_eq!(items[4]["data"]["deleted_at"], Value::Null);
    assert_eq!(items[5]["data"]["name"], json!("Feed A2"));
    assert!(items[0]["data"].get("password_hash").is_none());
    // The same events again, the same ids: stable.
    assert_eq!(all_events(&app, &a, "").await.0, items);

    // Page by page from the cursor gives the same events in the same order.
    let mut paged = Vec::new();
    let mut after = String::new();
    for _ in 0..10 {
        let page = app
            .get(&format!("/v1/events?limit=2{after}"), &a.token)
            .await;
        page.expect(200, "a page");
        let got = page.json["items"].as_array().unwrap().clone();
        after = format!("&after={}", page.json["next_cursor"].as_str().unwrap());
        if got.is_empty() {
            break;
        }
        paged.extend(got);
    }
    assert_eq!(paged, items);

    // Filtered by type.
    let (only, _) = all_events(&app, &a, "&types=customer.updated,company.renamed").await;
    assert_eq!(types(&only), vec!["customer.updated", "company.renamed"]);

    // Resuming after the end: nothing yet, and the cursor stays usable.
    let (none, same) = all_events(&app, &a, &format!("&after={cursor}")).await;
    assert!(none.is_empty());
    let (_, again) = all_events(&app, &a, &format!("&after={same}")).await;
    assert_eq!(again, same);

    // Long-poll: an event written during the wait ends it early.
    let started = Instant::now();
    let long_poll = format!("/v1/events?after={cursor}&wait=20");
    let poll = app.get(&long_poll, &a.token);
    let write = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        app.create_customer(&a.token, json!({"name": "Late", "surname": "Comer"}))
            .await
    };
    let (page, _) = tokio::join!(poll, write);
    page.expect(200, "long poll");
    assert_eq!(
        types(page.json["items"].as_array().unwrap()),
        vec!["customer.created"]
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );

    // A wait with nothing to come returns empty when the time is up.
    let after = page.json["next_cursor"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let empty = app
        .get(&format!("/v1/events?after={after}&wait=1"), &a.token)
        .await;
    empty.expect(200, "an empty wait");
    assert!(empty.json["items"].as_array().unwrap().is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));

    // B never sees A's events, and cannot use A's cursor.
    let (b_items, _) = all_events(&app, &b, "").await;
    assert_eq!(types(&b_items), vec!["user.created", "customer.created"]);
    assert!(b_items
        .iter()
        .all(|e| e["company_id"] == json!(b.company_id)));
    app.get(&format!("/v1/events?after={cursor}"), &b.token)
        .await
        .problem(400, "A's cursor for B");
}

both_stacks!(feed, feed_embedded, feed_full);

#[tokio::test]
async fn bad_feed_requests_are_400_and_plain_users_403() {
    let app = spawn_app(Stack::Embedded).await;
    let admin = app.signup("Feed errors").await;
    for query in [
        "after=garbage",
        "types=customer.nope",
        "wait=31",
        "wait=-1",
        "limit=0",
        "limit=abc",
    ] {
        app.get(&format!("/v1/events?{query}"), &admin.token)
            .await
            .problem(400, query);
    }
    let user = app.add_user(&admin, "user").await;
    app.get("/v1/events", &user.token)
        .await
        .problem(403, "a plain user reads the feed");
    app.get("/v1/events", "not-a-token")
        .await
        .problem(401, "no token");
}

#[tokio::test]
async fn a_change_made_with_an_api_key_names_the_key_as_actor() {
    let app = spawn_app(Stack::Embedded).await;
    let admin = app.signup("Keyed").await;
    let created = app
        .post("/v1/api-keys", &admin.token, json!({"name": "sync"}))
        .await;
    created.expect(201, "create a key");
    let key = created.json["key"].as_str().unwrap().to_owned();
    let key_id = created.json["id"].as_str().unwrap().to_owned();
    app.post(
        "/v1/customers",
        &key,
        json!({"name": "By", "surname": "Key"}),
    )
    .await
    .expect(201, "a key creates a customer");
    // A key reads the feed like an admin.
    let (items, _) = all_events(
        &app,
        &Tenant {
            token: key,
            ..admin
        },
        "&types=customer.created",
    )
    .await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["actor"], json!({ "api_key_id": key_id }));
}

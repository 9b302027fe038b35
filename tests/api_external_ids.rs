//! `external_id` on both stacks: set on create and by update, unique per
//! company (also under racing writes), released when changed, filterable,
//! and private to the company.
mod common;

use common::{spawn_app, Stack};
use serde_json::json;

async fn an_external_id_is_unique_in_its_company(stack: Stack) {
    let app = spawn_app(stack).await;
    let acme = app.signup("Acme ext").await;
    let globex = app.signup("Globex ext").await;

    let created = app
        .post(
            "/v1/customers",
            &acme.token,
            json!({"name": "Grace", "surname": "Hopper", "external_id": "  ERP-1 "}),
        )
        .await;
    created.expect(201, "a create with an external id");
    assert_eq!(created.json["external_id"], "ERP-1", "trimmed, as stored");
    let grace = created.json["id"].as_str().unwrap().to_owned();

    app.post(
        "/v1/customers",
        &acme.token,
        json!({"name": "Alan", "surname": "Turing", "external_id": "ERP-1"}),
    )
    .await
    .problem(409, "a second customer with the same external id");
    // Exact comparison: another system's keys may differ only by case.
    app.post(
        "/v1/customers",
        &acme.token,
        json!({"name": "Alan", "surname": "Turing", "external_id": "erp-1"}),
    )
    .await
    .expect(201, "a different external id");
    // Another company may use the same key.
    app.post(
        "/v1/customers",
        &globex.token,
        json!({"name": "Ada", "surname": "Lovelace", "external_id": "ERP-1"}),
    )
    .await
    .expect(201, "the same external id in another company");
    app.post(
        "/v1/customers",
        &acme.token,
        json!({"name": "Bad", "surname": "Key", "external_id": "x".repeat(201)}),
    )
    .await
    .invalid_field("external_id", "an external id over 200 characters");

    // Moving the id frees the old one; the new one is then taken.
    let moved = app
        .patch(
            &format!("/v1/customers/{grace}"),
            &acme.token,
            json!({"external_id": "ERP-2"}),
        )
        .await;
    moved.expect(200, "a new external id");
    assert_eq!(moved.json["external_id"], "ERP-2");
    let token = app
        .post(
            "/v1/customers",
            &acme.token,
            json!({"name": "Reuse", "surname": "Old", "external_id": "ERP-1"}),
        )
        .await
        .expect(201, "the released external id")
        .consistency_token("create");
    app.patch(
        &format!("/v1/customers/{grace}"),
        &acme.token,
        json!({"external_id": "ERP-1"}),
    )
    .await
    .problem(409, "moving onto a taken external id");

    // The filter, exact and company-scoped.
    let listed = app
        .get_after("/v1/customers?external_id=ERP-2", &acme.token, &token)
        .await;
    listed.expect(200, "the external id filter");
    let items = listed.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", listed.json);
    assert_eq!(items[0]["id"], grace.as_str());
    let other = app
        .get("/v1/customers?external_id=ERP-2", &globex.token)
        .await;
    other.expect(200, "another company's filter");
    assert_eq!(other.json["items"].as_array().unwrap().len(), 0);

    // Clearing it frees it too.
    app.patch(
        &format!("/v1/customers/{grace}"),
        &acme.token,
        json!({"external_id": null}),
    )
    .await
    .expect(200, "clearing the external id");
    app.post(
        "/v1/customers",
        &acme.token,
        json!({"name": "Next", "surname": "Holder", "external_id": "ERP-2"}),
    )
    .await
    .expect(201, "the cleared external id");
}
both_stacks!(
    an_external_id_is_unique_in_its_company,
    unique_embedded,
    unique_full
);

async fn racing_creates_leave_one_holder(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Race ext").await;
    let attempts = (0..8).map(|i| {
        app.post(
            "/v1/customers",
            &admin.token,
            json!({"name": format!("Racer{i}"), "surname": "Same", "external_id": "RACE-1"}),
        )
    });
    let answers = futures::future::join_all(attempts).await;
    let mut statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    statuses.sort();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409]);
    let token = answers
        .iter()
        .find(|r| r.status == 201)
        .unwrap()
        .consistency_token("the winner");
    let listed = app
        .get_after("/v1/customers?external_id=RACE-1", &admin.token, &token)
        .await;
    assert_eq!(listed.json["items"].as_array().unwrap().len(), 1);
}
both_stacks!(racing_creates_leave_one_holder, race_embedded, race_full);

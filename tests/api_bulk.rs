//! Bulk routes on both stacks: the batch endpoint, list filters with
//! pagination, and the streamed export.
mod common;

use common::{spawn_app, Stack, Tenant, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashSet;

async fn batch(app: &TestApp, tenant: &Tenant, operations: Value) -> common::Resp {
    app.post(
        "/v1/customers/batch",
        &tenant.token,
        json!({ "operations": operations }),
    )
    .await
}

/// Every id of a list, walking its cursors.
async fn all_ids(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let mut ids = vec![];
    let mut path = format!("/v1/customers?limit=7&{query}");
    loop {
        let page = app.get(&path, token).await;
        page.expect(200, &path);
        for item in page.json["items"].as_array().unwrap() {
            ids.push(item["id"].as_str().unwrap().to_owned());
        }
        match page.json["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/customers?limit=7&{query}&cursor={cursor}"),
            None => return ids,
        }
    }
}

async fn batches_answer_each_operation(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Batch").await;
    let created = app
        .create_customer(&admin.token, json!({"name": "Kept", "surname": "Here"}))
        .await;
    let id = created["id"].as_str().unwrap();
    let response = batch(
        &app,
        &admin,
        json!([
            {"op": "create", "data": {"name": "New", "surname": "One"}},
            {"op": "create", "data": {"name": "", "surname": "Bad"}},
            {"op": "update", "id": id, "if_match": "\"1\"", "data": {"phone": "+1 555 0100"}},
            {"op": "update", "id": id, "if_match": "\"1\"", "data": {"phone": "+1 555 0199"}},
            {"op": "delete", "id": uuid::Uuid::new_v4()},
            {"op": "update", "data": {"name": "No id"}},
            {"op": "create", "data": {"name": 5, "surname": "Typed"}},
        ]),
    )
    .await;
    response.expect(200, "a mixed batch");
    let results = response.json["results"].as_array().unwrap();
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 422, 200, 412, 404, 422, 422], "{results:?}");
    assert!(results[0]["id"].is_string() && results[0]["etag"] == "\"1\"");
    assert_eq!(results[1]["problem"]["errors"][0]["field"], "name");
    assert_eq!(results[2]["etag"], "\"2\"");
    assert!(results[3]["problem"]["detail"].is_string());
    assert_eq!(
        results[5]["problem"]["errors"][0]["field"],
        "operations[5].id"
    );
    assert_eq!(
        results[6]["problem"]["errors"][0]["field"],
        "operations[6].data"
    );
    let now = app.get(&format!("/v1/customers/{id}"), &admin.token).await;
    assert_eq!(
        now.json["phone"], "+1 555 0100",
        "only the first update applied"
    );

    batch(&app, &admin, json!([]))
        .await
        .invalid_field("operations", "an empty batch");
    let too_many: Vec<Value> = (0..101)
        .map(|n| json!({"op": "create", "data": {"name": "N", "surname": format!("S{n}")}}))
        .collect();
    batch(&app, &admin, json!(too_many))
        .await
        .invalid_field("operations", "101 operations");
    // Another company's customer is not there, in a batch as anywhere.
    let other = app.signup("Other").await;
    let theirs = batch(&app, &other, json!([{"op": "delete", "id": id}])).await;
    assert_eq!(theirs.json["results"][0]["status"], 404);
}

async fn filters_narrow_lists_and_pages_stay_stable(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Filters").await;
    let user = app.add_user(&admin, "user").await;
    let mut by_admin = HashSet::new();
    for n in 0..10 {
        let c = app
            .create_customer(
                &admin.token,
                json!({"name": "A", "surname": format!("Admin{n}")}),
            )
            .await;
        by_admin.insert(c["id"].as_str().unwrap().to_owned());
    }
    let middle = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut by_user = HashSet::new();
    for n in 0..9 {
        let c = app
            .create_customer(
                &user.token,
                json!({"name": "U", "surname": format!("User{n}")}),
            )
            .await;
        by_user.insert(c["id"].as_str().unwrap().to_owned());
    }
    let deleted = by_user.iter().next().unwrap().clone();
    app.delete(&format!("/v1/customers/{deleted}"), &user.token)
        .await
        .expect(204, "delete one");
    let photo = app
        .upload_photo(&admin.token, common::png_bytes(), None)
        .await;
    let with_photo = by_admin.iter().next().unwrap().clone();
    app.put(
        &format!("/v1/customers/{with_photo}/photo"),
        &admin.token,
        json!({"photo_id": photo.json["id"]}),
    )
    .await
    .expect(200, "attach");

    let set = |ids: Vec<String>| -> HashSet<String> {
        let unique: HashSet<String> = ids.iter().cloned().collect();
        assert_eq!(unique.len(), ids.len(), "no row twice across pages");
        unique
    };
    let created_by_user =
        set(all_ids(&app, &admin.token, &format!("created_by={}", user.user_id)).await);
    let live_by_user: HashSet<String> = by_user
        .iter()
        .filter(|id| **id != deleted)
        .cloned()
        .collect();
    assert_eq!(created_by_user, live_by_user);
    let after = set(all_ids(
        &app,
        &admin.token,
        &format!("created_after={middle}&sort=surname"),
    )
    .await);
    assert_eq!(after, live_by_user);
    let before = set(all_ids(&app, &admin.token, &format!("created_before={middle}")).await);
    assert_eq!(before, by_admin);
    let photos = set(all_ids(&app, &admin.token, "has_photo=true").await);
    assert_eq!(photos, HashSet::from([with_photo.clone()]));
    let everyone = set(all_ids(&app, &admin.token, "deleted=include").await);
    assert_eq!(everyone.len(), 19);
    let only = set(all_ids(&app, &admin.token, "deleted=only").await);
    assert_eq!(only, HashSet::from([deleted]));
    let updated = set(all_ids(
        &app,
        &admin.token,
        &format!("updated_by={}&has_photo=true", admin.user_id),
    )
    .await);
    assert_eq!(updated, HashSet::from([with_photo]));
    // A cursor continues only the list it came from.
    let page = app
        .get("/v1/customers?limit=2&has_photo=false", &admin.token)
        .await;
    let cursor = page.json["next_cursor"].as_str().unwrap();
    app.get(
        &format!("/v1/customers?limit=2&has_photo=true&cursor={cursor}"),
        &admin.token,
    )
    .await
    .problem(400, "a cursor of another filter");
    app.get("/v1/customers?created_after=yesterday", &admin.token)
        .await
        .problem(400, "a time that is not RFC 3339");
    app.get("/v1/customers?deleted=sometimes", &admin.token)
        .await
        .problem(400, "an unknown deleted value");
}

async fn exports_stream_every_row(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Export").await;
    let other = app.signup("Not exported").await;
    app.create_customer(
        &other.token,
        json!({"name": "Hidden", "surname": "Elsewhere"}),
    )
    .await;
    // More rows than one page of the export's snapshot reads.
    for chunk in 0..11 {
        let operations: Vec<Value> = (0..100)
            .map(|n| json!({"op": "create", "data": {"name": "Row", "surname": format!("S{chunk:02}{n:03}")}}))
            .collect();
        let response = batch(&app, &admin, json!(operations)).await;
        response.expect(200, "load rows");
        assert!(response.json["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == 201));
    }
    let formula = app
        .create_customer(
            &admin.token,
            json!({"name": "=HYPERLINK(\"http://x\",\"y\")", "surname": "Quote, \"me\"", "notes": "two\nlines", "phone": "+34 600 000 000"}),
        )
        .await;
    let csv = app
        .send(app.req(
            Method::GET,
            "/v1/customers/export?format=csv&sort=surname",
            Some(&admin.token),
        ))
        .await;
    csv.expect(200, "CSV export");
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let text = csv.text();
    assert!(text.starts_with("id,name,surname,email,phone,notes,photo_id,created_by,created_at,updated_by,updated_at,deleted_at,external_id\r\n"));
    assert!(
        !text.contains("Hidden"),
        "another company's rows are not exported"
    );
    let line = text
        .split("\r\n")
        .find(|l| l.starts_with(formula["id"].as_str().unwrap()))
        .expect("the formula row");
    assert!(
        line.contains("\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""),
        "{line}"
    );
    assert!(line.contains("\"Quote, \"\"me\"\"\""), "{line}");
    assert!(line.contains("'+34 600 000 000"), "{line}");
    assert!(line.contains("\"two\nlines\""), "{line}");

    let ndjson = app
        .send(app.req(
            Method::GET,
            "/v1/customers/export?format=ndjson&q=row",
            Some(&admin.token),
        ))
        .await;
    ndjson.expect(200, "NDJSON export");
    let rows: Vec<Value> = ndjson
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON customer per line"))
        .collect();
    assert_eq!(rows.len(), 1_100, "every matching row, past one page");
    let ids: HashSet<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1_100);
    app.send(app.req(
        Method::GET,
        "/v1/customers/export?format=xml",
        Some(&admin.token),
    ))
    .await
    .problem(400, "an unknown format");
}

async fn a_customer_export_holds_everything_about_them(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Access").await;
    let user = app.add_user(&admin, "user").await;
    let other = app.signup("Stranger").await;
    let customer = app
        .create_customer(
            &admin.token,
            json!({"name": "Sub", "surname": "Ject", "email": "s@example.com"}),
        )
        .await;
    let id = customer["id"].as_str().unwrap();
    app.patch(
        &format!("/v1/customers/{id}"),
        &user.token,
        json!({"phone": "+1 555 0100"}),
    )
    .await
    .expect(200, "a change");
    let photo = app
        .upload_photo(&admin.token, common::png_bytes(), None)
        .await;
    app.put(
        &format!("/v1/customers/{id}/photo"),
        &admin.token,
        json!({"photo_id": photo.json["id"]}),
    )
    .await
    .expect(200, "attach");
    let export = app
        .get(&format!("/v1/customers/{id}/export"), &admin.token)
        .await;
    export.expect(200, "the subject export");
    assert_eq!(export.json["customer"]["email"], "s@example.com");
    assert_eq!(export.json["customer"]["phone"], "+1 555 0100");
    let history = export.json["history"]["items"].as_array().unwrap();
    assert_eq!(history.len(), 3, "{history:?}");
    assert_eq!(history[1]["user_id"], user.user_id.as_str());
    let photos = export.json["photos"].as_array().unwrap();
    assert_eq!(photos.len(), 1);
    assert_eq!(photos[0]["id"], photo.json["id"]);
    app.get(&format!("/v1/customers/{id}/export"), &user.token)
        .await
        .problem(403, "a plain user");
    app.get(&format!("/v1/customers/{id}/export"), &other.token)
        .await
        .problem(404, "another company");
}

both_stacks!(
    a_customer_export_holds_everything_about_them,
    subject_export_embedded,
    subject_export_full
);
both_stacks!(batches_answer_each_operation, batch_embedded, batch_full);
both_stacks!(
    filters_narrow_lists_and_pages_stay_stable,
    filters_embedded,
    filters_full
);
both_stacks!(exports_stream_every_row, export_embedded, export_full);

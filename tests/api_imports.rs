//! Customer imports on both stacks, black box: a large file with planted
//! bad rows, upserts, idempotent retries, round trips through the export,
//! cancellation, tenancy, and a server killed mid-import.
mod common;

use common::{spawn_app, spawn_process, Resp, Stack, Tenant, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

const CSV: &str = "text/csv";
const NDJSON: &str = "application/x-ndjson";

async fn import(
    app: &TestApp,
    token: &str,
    content_type: &str,
    query: &str,
    key: Option<&str>,
    file: Vec<u8>,
) -> Resp {
    let mut request = app
        .req(
            Method::POST,
            &format!("/v1/customers/imports{query}"),
            Some(token),
        )
        .header("content-type", content_type)
        .body(file);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    app.send(request).await
}

/// Polls the job until it leaves `running`; returns it.
async fn finished(app: &TestApp, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let job = app.get(&format!("/v1/customers/imports/{id}"), token).await;
        job.expect(200, "the job");
        if job.json["state"] != "running" {
            return job.json;
        }
        assert!(
            Instant::now() < deadline,
            "the import never ended: {}",
            job.json
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Uploads and waits for the job to end.
async fn imported(
    app: &TestApp,
    token: &str,
    content_type: &str,
    query: &str,
    file: Vec<u8>,
) -> Value {
    let started = import(app, token, content_type, query, None, file).await;
    started.expect(202, "an import");
    let id = started.json["id"].as_str().unwrap().to_owned();
    assert_eq!(
        started.header("location").as_deref(),
        Some(format!("/v1/customers/imports/{id}").as_str())
    );
    finished(app, token, &id).await
}

async fn errors_of(app: &TestApp, token: &str, job: &Value) -> Vec<Value> {
    let report = app.get(job["errors_url"].as_str().unwrap(), token).await;
    report.expect(200, "the error report");
    assert_eq!(report.header("content-type").as_deref(), Some(NDJSON));
    report
        .text()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Every customer of the caller's company, as the NDJSON export gives them.
async fn exported(app: &TestApp, token: &str) -> Vec<Value> {
    let export = app.get("/v1/customers/export?format=ndjson", token).await;
    export.expect(200, "the export");
    export
        .text()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

type Details = (String, String, String, String, String, String);

fn details(customer: &Value) -> Details {
    let text = |field: &str| customer[field].as_str().unwrap_or("").to_owned();
    (
        text("name"),
        text("surname"),
        text("email"),
        text("phone"),
        text("notes"),
        text("external_id"),
    )
}

/// `rows` data rows; every 10,000th is bad in one of five ways. Returns the
/// file and the bad rows' lines with the field each names.
fn book(rows: usize) -> (Vec<u8>, Vec<(i64, Value)>) {
    let mut file = b"\xEF\xBB\xBFname,surname,email,phone,notes\r\n".to_vec();
    let mut bad = vec![];
    for i in 0..rows {
        let line = i as i64 + 2;
        let row: Vec<u8> = match (i % 10_000 == 9_999).then_some((i / 10_000) % 5) {
            Some(0) => {
                bad.push((line, json!("surname")));
                format!("N{i},,c{i}@example.com,,").into_bytes()
            }
            Some(1) => {
                bad.push((line, json!("email")));
                format!("N{i},S{i},not-an-email,,").into_bytes()
            }
            Some(2) => {
                bad.push((line, json!("name")));
                format!("{},S{i},,,", "n".repeat(201)).into_bytes()
            }
            Some(3) => {
                bad.push((line, Value::Null));
                format!("N{i},S{i},c{i}@example.com").into_bytes()
            }
            Some(_) => {
                bad.push((line, json!("name")));
                [b"N\xFF".as_slice(), format!(",S{i},,,").as_bytes()].concat()
            }
            None => format!("N{i},S{i},c{i}@example.com,+1 555 {i:07},\"a, \"\"b\"\" {i}\"")
                .into_bytes(),
        };
        file.extend_from_slice(&row);
        file.extend_from_slice(b"\r\n");
    }
    (file, bad)
}

async fn a_large_file_creates_every_good_row_and_explains_the_rest(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Importer").await;
    let (file, bad) = book(100_000);
    let job = imported(&app, &admin.token, CSV, "", file).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["rows_read"], 100_000);
    assert_eq!(job["created"], 100_000 - bad.len());
    assert_eq!(job["rejected"], bad.len());
    assert_eq!(job["updated"], 0);
    let reasons = errors_of(&app, &admin.token, &job).await;
    let reported: Vec<(i64, Value)> = reasons
        .iter()
        .map(|r| (r["line"].as_i64().unwrap(), r["field"].clone()))
        .collect();
    assert_eq!(reported, bad);
    assert!(reasons
        .iter()
        .all(|r| !r["message"].as_str().unwrap().is_empty()));
    // The job ends once the views show its last batch.
    let customers = exported(&app, &admin.token).await;
    assert_eq!(customers.len(), 100_000 - bad.len());
    let ada = customers.iter().find(|c| c["name"] == "N17").unwrap();
    assert_eq!(
        details(ada),
        (
            "N17".into(),
            "S17".into(),
            "c17@example.com".into(),
            "+1 555 0000017".into(),
            "a, \"b\" 17".into(),
            String::new()
        )
    );
    assert_eq!(ada["created_by"], admin.user_id.as_str());
}

async fn upserts_and_retries_write_each_row_once(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Upserts").await;
    let token = admin.token.as_str();
    let first = b"name,surname,email\nAda,Lovelace,ada@example.com\nAlan,Turing,alan@example.com\nGrace,Hopper,\n".to_vec();
    let started = import(&app, token, CSV, "", Some("book-1"), first.clone()).await;
    started.expect(202, "a keyed import");
    let id = started.json["id"].as_str().unwrap().to_owned();
    let job = finished(&app, token, &id).await;
    assert_eq!(
        (job["created"].as_i64(), job["rejected"].as_i64()),
        (Some(3), Some(0))
    );

    let again = import(&app, token, CSV, "", Some("book-1"), first).await;
    again.expect(202, "the same file and key");
    assert_eq!(again.json["id"], id.as_str());
    assert_eq!(again.json["created"], 3);
    assert_eq!(exported(&app, token).await.len(), 3, "nothing twice");
    import(
        &app,
        token,
        CSV,
        "",
        Some("book-1"),
        b"name,surname\nX,Y\n".to_vec(),
    )
    .await
    .invalid_field("Idempotency-Key", "the key with another file");

    let upsert = b"name,surname,email,phone\nAda,Byron,ADA@example.com,+44 20 7946 0000\n\
        New,One,new@example.com,\nNewer,One,new@example.com,+1 555 0100\nNo,Email,,\n"
        .to_vec();
    let job = imported(&app, token, CSV, "?upsert_on=email", upsert).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["upsert_on"], "email");
    assert_eq!(
        (job["created"].as_i64(), job["updated"].as_i64()),
        (Some(2), Some(2))
    );
    let customers = exported(&app, token).await;
    assert_eq!(customers.len(), 5);
    let by_email: HashMap<&str, &Value> = customers
        .iter()
        .filter_map(|c| Some((c["email"].as_str()?, c)))
        .collect();
    // Matched whatever the case; the row's email is the one kept.
    assert_eq!(by_email["ADA@example.com"]["surname"], "Byron");
    assert_eq!(by_email["ADA@example.com"]["phone"], "+44 20 7946 0000");
    assert_eq!(by_email["new@example.com"]["name"], "Newer");
    assert_eq!(by_email["new@example.com"]["phone"], "+1 555 0100");
    let lines = b"{\"name\":\"Json\",\"surname\":\"Line\",\"email\":null}\n\n[1]\n\
        {\"name\":\"Bad\",\"surname\":\"Key\",\"age\":3}\n{\"name\":\"Two\",\"surname\":\"Line\",\"notes\":\"n\"}\n"
        .to_vec();
    let job = imported(&app, token, NDJSON, "", lines).await;
    assert_eq!(
        (job["created"].as_i64(), job["rejected"].as_i64()),
        (Some(2), Some(2))
    );
    let reasons = errors_of(&app, token, &job).await;
    let lines: Vec<(i64, Value)> = reasons
        .iter()
        .map(|r| (r["line"].as_i64().unwrap(), r["field"].clone()))
        .collect();
    assert_eq!(lines, [(3, Value::Null), (4, json!("age"))]);
}

/// The fields of each exported customer that has an external id, by it.
async fn by_external_id(app: &TestApp, token: &str) -> HashMap<String, Value> {
    exported(app, token)
        .await
        .into_iter()
        .filter_map(|c| Some((c["external_id"].as_str()?.to_owned(), c)))
        .collect()
}

async fn external_ids_are_claimed_and_upserted_on(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("External ids").await;
    let token = admin.token.as_str();
    app.post(
        "/v1/customers",
        token,
        json!({"name": "Held", "surname": "Before", "external_id": "ERP-1"}),
    )
    .await
    .expect(201, "a customer holding ERP-1");

    let file = b"name,surname,external_id\nAda,Lovelace,ERP-2\nTaken,Row,ERP-1\n\
        Twin,Row,ERP-2\nNo,Key,\n"
        .to_vec();
    let job = imported(&app, token, CSV, "", file).await;
    assert_eq!(
        (job["created"].as_i64(), job["rejected"].as_i64()),
        (Some(2), Some(2)),
        "{job}"
    );
    let reasons: Vec<(i64, Value)> = errors_of(&app, token, &job)
        .await
        .iter()
        .map(|r| (r["line"].as_i64().unwrap(), r["field"].clone()))
        .collect();
    assert_eq!(
        reasons,
        [(3, json!("external_id")), (4, json!("external_id"))]
    );

    let upsert = b"name,surname,external_id,email\nGrace,Hopper,ERP-1,grace@example.com\n\
        Ada,Byron,ERP-2,\nNew,One,ERP-3,\nNewer,One,ERP-3,\n"
        .to_vec();
    let job = imported(&app, token, CSV, "?upsert_on=external_id", upsert).await;
    assert_eq!(job["upsert_on"], "external_id");
    assert_eq!(
        (
            job["created"].as_i64(),
            job["updated"].as_i64(),
            job["rejected"].as_i64()
        ),
        (Some(1), Some(3), Some(0)),
        "{job}"
    );
    let customers = by_external_id(&app, token).await;
    assert_eq!(customers.len(), 3, "{customers:?}");
    assert_eq!(
        exported(&app, token).await.len(),
        4,
        "Held, Ada, No Key, New"
    );
    assert_eq!(customers["ERP-1"]["name"], "Grace");
    assert_eq!(customers["ERP-1"]["email"], "grace@example.com");
    assert_eq!(customers["ERP-2"]["surname"], "Byron");
    assert_eq!(customers["ERP-3"]["name"], "Newer");
    // The import's claims hold against single creates.
    app.post(
        "/v1/customers",
        token,
        json!({"name": "Late", "surname": "Comer", "external_id": "ERP-3"}),
    )
    .await
    .problem(409, "an external id an import created");
}
both_stacks!(
    external_ids_are_claimed_and_upserted_on,
    external_ids_embedded,
    external_ids_full
);

async fn an_export_imports_as_it_was(stack: Stack) {
    let app = spawn_app(stack).await;
    let from = app.signup("From").await;
    let to = app.signup("To").await;
    let file = "name,surname,email,phone,notes,external_id\n\
        -Minus,Sign,m@example.com,+1 555 0100,=SUM(A1),+ERP-1\n\
        Ada,\"Love, lace\",,,\"@home\nsecond line\",\n\
        Émile,Zola,e@example.com,(555) 0101,plain,ERP-2\n";
    let job = imported(&app, &from.token, CSV, "", file.as_bytes().to_vec()).await;
    assert_eq!(job["created"], 3, "{job}");
    let export = app
        .get("/v1/customers/export?format=csv", &from.token)
        .await;
    export.expect(200, "the CSV export");
    assert!(export.text().contains("'=SUM(A1)"), "cells are guarded");
    let job = imported(&app, &to.token, CSV, "", export.bytes.clone()).await;
    assert_eq!(
        (job["created"].as_i64(), job["rejected"].as_i64()),
        (Some(3), Some(0)),
        "{job}"
    );
    let set = |customers: Vec<Value>| customers.iter().map(details).collect::<BTreeSet<_>>();
    let original = set(exported(&app, &from.token).await);
    assert_eq!(set(exported(&app, &to.token).await), original);
    assert!(original.contains(&(
        "-Minus".into(),
        "Sign".into(),
        "m@example.com".into(),
        "+1 555 0100".into(),
        "=SUM(A1)".into(),
        "+ERP-1".into()
    )));
}

async fn imports_are_admin_only_checked_and_company_scoped(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Guarded").await;
    let other = app.signup("Elsewhere").await;
    let user: Tenant = app.add_user(&admin, "user").await;
    let file = b"name,surname\nA,B\n".to_vec();
    import(&app, &user.token, CSV, "", None, file.clone())
        .await
        .problem(403, "a plain user");
    import(
        &app,
        &admin.token,
        "application/json",
        "",
        None,
        file.clone(),
    )
    .await
    .problem(415, "JSON");
    import(
        &app,
        &admin.token,
        CSV,
        "",
        None,
        b"name,surname,company\nA,B,C\n".to_vec(),
    )
    .await
    .invalid_field("file", "an unknown column");
    import(
        &app,
        &admin.token,
        CSV,
        "",
        None,
        b"name,email\nA,a@example.com\n".to_vec(),
    )
    .await
    .invalid_field("file", "no surname column");
    import(&app, &admin.token, CSV, "", None, vec![])
        .await
        .invalid_field("file", "an empty file");
    assert!(
        exported(&app, &admin.token).await.is_empty(),
        "refused files change nothing"
    );

    let job = imported(&app, &admin.token, CSV, "", file).await;
    let id = job["id"].as_str().unwrap();
    for path in [
        format!("/v1/customers/imports/{id}"),
        format!("/v1/customers/imports/{id}/errors"),
    ] {
        app.get(&path, &other.token)
            .await
            .problem(404, "another company's job");
        app.get(&path, &user.token)
            .await
            .problem(403, "a plain user");
    }
    app.post(
        &format!("/v1/customers/imports/{id}/cancel"),
        &admin.token,
        json!({}),
    )
    .await
    .problem(409, "a finished job");

    // Cancelled mid-way: the counts are exactly what was written.
    let (big, _) = book(30_000);
    let started = import(&app, &admin.token, CSV, "", None, big).await;
    started.expect(202, "a large import");
    let big_id = started.json["id"].as_str().unwrap().to_owned();
    let cancel = app
        .post(
            &format!("/v1/customers/imports/{big_id}/cancel"),
            &admin.token,
            json!({}),
        )
        .await;
    cancel.expect(202, "cancel");
    assert_eq!(cancel.json["state"], "cancelled");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let job = finished(&app, &admin.token, &big_id).await;
    assert_eq!(job["state"], "cancelled");
    let created = job["created"].as_u64().unwrap() as usize;
    assert!(created < 30_000, "{job}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while exported(&app, &admin.token).await.len() != created + 1 {
        assert!(
            Instant::now() < deadline,
            "the views never matched the counts: {job}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Killed with SIGKILL mid-import, restarted, the same file sent again with
/// the same key: every row exists exactly once.
async fn a_killed_import_resumes_when_sent_again(stack: Stack) {
    const ROWS: usize = 50_000;
    let mut app = spawn_process(stack, &[]).await;
    let admin = app.signup("Crash").await;
    let (file, bad) = book(ROWS);
    let started = import(&app, &admin.token, CSV, "", Some("crash"), file.clone()).await;
    started.expect(202, "an import");
    let id = started.json["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job = app
            .get(&format!("/v1/customers/imports/{id}"), &admin.token)
            .await;
        assert_eq!(
            job.json["state"], "running",
            "killed too late: {}",
            job.json
        );
        if job.json["rows_read"].as_i64().unwrap() >= 10_000 {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.kill_and_restart().await;
    // Until its heartbeat is stale, the job counts as running elsewhere.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = app
            .get(&format!("/v1/customers/imports/{id}"), &admin.token)
            .await;
        if job.json["state"] == "failed" {
            assert!(job.json["detail"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key"));
            break;
        }
        assert!(Instant::now() < deadline, "{}", job.json);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Past the lag bound (the views catch up with what the killed process
    // left unacknowledged) writes are 503: a client retries after Retry-After.
    let deadline = Instant::now() + Duration::from_secs(120);
    let again = loop {
        let again = import(&app, &admin.token, CSV, "", Some("crash"), file.clone()).await;
        if again.status != 503 || Instant::now() > deadline {
            break again;
        }
        let wait = again
            .header("retry-after")
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        tokio::time::sleep(Duration::from_secs(wait)).await;
    };
    again.expect(202, "the retry");
    assert_eq!(again.json["id"], id.as_str());
    let job = finished(&app, &admin.token, &id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["created"], ROWS - bad.len());
    assert_eq!(job["rejected"], bad.len());
    assert_eq!(errors_of(&app, &admin.token, &job).await.len(), bad.len());
    let customers = exported(&app, &admin.token).await;
    let names: BTreeSet<&str> = customers
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(customers.len(), ROWS - bad.len());
    assert_eq!(names.len(), customers.len(), "no row twice");
}

both_stacks!(
    a_large_file_creates_every_good_row_and_explains_the_rest,
    large_file_embedded,
    large_file_full
);
both_stacks!(
    upserts_and_retries_write_each_row_once,
    upserts_embedded,
    upserts_full
);
both_stacks!(
    an_export_imports_as_it_was,
    round_trip_embedded,
    round_trip_full
);
both_stacks!(
    imports_are_admin_only_checked_and_company_scoped,
    guards_embedded,
    guards_full
);
both_stacks!(
    a_killed_import_resumes_when_sent_again,
    killed_embedded,
    killed_full
);

//! Optimistic concurrency (`ETag` / `If-Match`) and idempotent creates under
//! parallel requests, on both stacks.
mod common;

use common::{png_bytes, spawn_app, Resp, Stack};
use futures::future::join_all;
use reqwest::Method;
use serde_json::json;
use std::collections::HashSet;

async fn parallel_if_match(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Racers").await;
    let created = app
        .post(
            "/v1/customers",
            &admin.token,
            json!({"name": "Race", "surname": "Target"}),
        )
        .await;
    created.expect(201, "create");
    let version = created.etag_version("create");
    let path = format!("/v1/customers/{}", created.json["id"].as_str().unwrap());
    let etag = format!("\"{version}\"");

    let requests = (0..8).map(|i| {
        let request = app
            .req(Method::PATCH, &path, Some(&admin.token))
            .header("if-match", etag.clone())
            .json(&json!({"notes": format!("writer {i}")}));
        app.send(request)
    });
    let responses: Vec<Resp> = join_all(requests).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    let winners: Vec<&Resp> = responses.iter().filter(|r| r.status == 200).collect();
    assert_eq!(winners.len(), 1, "exactly one writer wins: {statuses:?}");
    assert_eq!(
        responses.iter().filter(|r| r.status == 412).count(),
        7,
        "the seven others get 412: {statuses:?}"
    );
    for loser in responses.iter().filter(|r| r.status == 412) {
        loser.problem(412, "a losing writer");
    }
    let winner = winners[0];
    let token = winner.consistency_token("the winning patch");
    assert_eq!(winner.etag_version("winner"), version + 1);
    let now = app.get_after(&path, &admin.token, &token).await;
    assert_eq!(now.json["notes"], winner.json["notes"]);
    assert_eq!(now.json["version"], version + 1);
    assert_eq!(now.etag_version("after the race"), version + 1);
    let history = app.get(&format!("{path}/history"), &admin.token).await;
    assert_eq!(
        history.json["items"].as_array().map(Vec::len),
        Some((version + 1) as usize),
        "losers left events: {}",
        history.json
    );

    // The new ETag works; the old one is stale and changes nothing.
    let fresh = app
        .send(
            app.req(Method::PATCH, &path, Some(&admin.token))
                .header("if-match", format!("\"{}\"", version + 1))
                .json(&json!({"phone": "+1 555 0111"})),
        )
        .await;
    fresh.expect(200, "PATCH with the current ETag");
    let current = fresh.json.clone();
    let current_version = fresh.etag_version("fresh");
    for (method, suffix, body) in [
        (Method::PATCH, "", Some(json!({"name": "Stale"}))),
        (Method::DELETE, "", None),
        (Method::DELETE, "/photo", None),
        (
            Method::PUT,
            "/photo",
            Some(json!({"photo_id": uuid::Uuid::new_v4()})),
        ),
    ] {
        let mut request = app
            .req(
                method.clone(),
                &format!("{path}{suffix}"),
                Some(&admin.token),
            )
            .header("if-match", etag.clone());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = app.send(request).await;
        if suffix == "/photo" && method == Method::PUT {
            // An unknown photo may be refused before the version is checked.
            assert!(
                response.status == 412 || response.status == 404,
                "stale PUT photo: {}",
                response.status
            );
        } else {
            response.problem(412, &format!("stale {method} {path}{suffix}"));
        }
    }
    let unchanged = app.get(&path, &admin.token).await;
    assert_eq!(
        unchanged.json, current,
        "a stale write changed the customer"
    );
    assert_eq!(unchanged.etag_version("unchanged"), current_version);

    // Delete and restore with If-Match.
    let deleted = app
        .send(
            app.req(Method::DELETE, &path, Some(&admin.token))
                .header("if-match", format!("\"{current_version}\"")),
        )
        .await;
    deleted.expect(204, "DELETE with the current ETag");
    let token = deleted.consistency_token("delete");
    let now = app.get_after(&path, &admin.token, &token).await;
    let deleted_version = now.etag_version("deleted");
    app.send(
        app.req(Method::POST, &format!("{path}/restore"), Some(&admin.token))
            .header("if-match", format!("\"{current_version}\"")),
    )
    .await
    .problem(412, "stale restore");
    let restored = app
        .send(
            app.req(Method::POST, &format!("{path}/restore"), Some(&admin.token))
                .header("if-match", format!("\"{deleted_version}\"")),
        )
        .await;
    restored.expect(200, "restore with the current ETag");
    assert!(restored.json["deleted_at"].is_null());

    // Users and the company honour If-Match too.
    let me = app.get("/v1/me", &admin.token).await;
    let user_version = me.etag_version("me");
    app.send(
        app.req(
            Method::PATCH,
            &format!("/v1/users/{}", admin.user_id),
            Some(&admin.token),
        )
        .header("if-match", format!("\"{}\"", user_version + 5))
        .json(&json!({"name": "Stale"})),
    )
    .await
    .problem(412, "stale PATCH user");
    let company = app.get("/v1/company", &admin.token).await;
    let company_version = company.etag_version("company");
    app.send(
        app.req(Method::PATCH, "/v1/company", Some(&admin.token))
            .header("if-match", format!("\"{}\"", company_version + 5))
            .json(&json!({"name": "Stale"})),
    )
    .await
    .problem(412, "stale PATCH company");
    assert_eq!(app.get("/v1/me", &admin.token).await.json, me.json);
    assert_eq!(
        app.get("/v1/company", &admin.token).await.json,
        company.json
    );
    let renamed = app
        .send(
            app.req(Method::PATCH, "/v1/company", Some(&admin.token))
                .header("if-match", format!("\"{company_version}\""))
                .json(&json!({"name": "Racers Ltd"})),
        )
        .await;
    renamed.expect(200, "PATCH company with the current ETag");
    assert_eq!(renamed.etag_version("renamed"), company_version + 1);
}
both_stacks!(
    parallel_if_match,
    parallel_if_match_embedded,
    parallel_if_match_full_stack
);

async fn idempotent_creates(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Retriers").await;
    let other = app.signup("Neighbours").await;
    let key = format!("create-{}", uuid::Uuid::new_v4());
    let body = json!({"name": "Idem", "surname": "Potent", "email": "idem@example.com"});

    let requests = (0..16).map(|_| {
        app.send(
            app.req(Method::POST, "/v1/customers", Some(&admin.token))
                .header("idempotency-key", key.clone())
                .json(&body),
        )
    });
    let responses: Vec<Resp> = join_all(requests).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert!(
        statuses.iter().all(|s| *s == 201),
        "all repeats answer 201: {statuses:?}"
    );
    let ids: HashSet<&str> = responses
        .iter()
        .map(|r| r.json["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "all repeats answer the same customer: {ids:?}"
    );
    let id = ids.into_iter().next().unwrap().to_owned();
    for response in &responses {
        assert_eq!(response.json["name"], "Idem");
        assert!(response
            .header("location")
            .is_some_and(|l| l.ends_with(&format!("/v1/customers/{id}"))));
        response.consistency_token("an idempotent create");
    }
    let token = responses[0].consistency_token("create");
    let list = app.get_after("/v1/customers", &admin.token, &token).await;
    let items = list.json["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "one customer for one key: {}", list.json);
    assert_eq!(items[0]["id"], id.as_str());

    // A later repeat answers the same; the customer has a single event.
    let again = app
        .send(
            app.req(Method::POST, "/v1/customers", Some(&admin.token))
                .header("idempotency-key", key.clone())
                .json(&body),
        )
        .await;
    again.expect(201, "a later repeat");
    assert_eq!(again.json["id"], id.as_str());
    let history = app
        .get(&format!("/v1/customers/{id}/history"), &admin.token)
        .await;
    assert_eq!(history.json["items"].as_array().map(Vec::len), Some(1));

    // The same key in another company creates that company's own customer.
    let theirs = app
        .send(
            app.req(Method::POST, "/v1/customers", Some(&other.token))
                .header("idempotency-key", key.clone())
                .json(&json!({"name": "Other", "surname": "Company"})),
        )
        .await;
    theirs.expect(201, "the same key in another company");
    assert_ne!(theirs.json["id"], id.as_str());
    assert_eq!(theirs.json["name"], "Other");
    let mine = app.get(&format!("/v1/customers/{id}"), &admin.token).await;
    assert_eq!(mine.json["name"], "Idem");

    // Another key creates another customer.
    let fresh = app
        .send(
            app.req(Method::POST, "/v1/customers", Some(&admin.token))
                .header("idempotency-key", format!("{key}-2"))
                .json(&body),
        )
        .await;
    fresh.expect(201, "another key");
    assert_ne!(fresh.json["id"], id.as_str());

    // Users: repeats create one user.
    let email = format!("idem-{}@example.com", uuid::Uuid::new_v4().simple());
    let user_body =
        json!({"email": email, "name": "Ida", "password": "long enough", "role": "user"});
    let user_key = format!("user-{}", uuid::Uuid::new_v4());
    let users: Vec<Resp> = join_all((0..4).map(|_| {
        app.send(
            app.req(Method::POST, "/v1/users", Some(&admin.token))
                .header("idempotency-key", user_key.clone())
                .json(&user_body),
        )
    }))
    .await;
    let statuses: Vec<u16> = users.iter().map(|r| r.status).collect();
    assert!(
        statuses.iter().all(|s| *s == 201),
        "user repeats: {statuses:?}"
    );
    let user_ids: HashSet<&str> = users
        .iter()
        .map(|r| r.json["id"].as_str().unwrap())
        .collect();
    assert_eq!(user_ids.len(), 1);
    let list = app.get("/v1/users", &admin.token).await;
    assert_eq!(list.json["items"].as_array().map(Vec::len), Some(2));

    // Photos: repeats create one photo.
    let photo_key = format!("photo-{}", uuid::Uuid::new_v4());
    let mut photo_ids = HashSet::new();
    for _ in 0..3 {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(png_bytes()).file_name("a.png"),
        );
        let response = app
            .send(
                app.req(Method::POST, "/v1/photos", Some(&admin.token))
                    .header("idempotency-key", photo_key.clone())
                    .multipart(form),
            )
            .await;
        response.expect(201, "a photo upload repeat");
        photo_ids.insert(response.json["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(photo_ids.len(), 1, "photo repeats: {photo_ids:?}");
}
both_stacks!(
    idempotent_creates,
    idempotent_creates_embedded,
    idempotent_creates_full_stack
);

/// Two admins demote (or delete) each other at the same moment: the company
/// must keep an admin.
async fn last_admin_race(stack: Stack) {
    let app = spawn_app(stack).await;
    let first = app.signup("Coup").await;
    let second = app.add_user(&first, "admin").await;
    let admins = |list: &Resp| -> Vec<String> {
        list.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|u| u["role"] == "admin")
            .map(|u| u["id"].as_str().unwrap().to_owned())
            .collect()
    };

    // Demote each other.
    let (path_a, path_b) = (
        format!("/v1/users/{}/role", second.user_id),
        format!("/v1/users/{}/role", first.user_id),
    );
    let (a, b) = futures::join!(
        app.put(&path_a, &first.token, json!({"role": "user"})),
        app.put(&path_b, &second.token, json!({"role": "user"})),
    );
    let statuses = [a.status, b.status];
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "exactly one demotion succeeds: {statuses:?}"
    );
    for response in [&a, &b].into_iter().filter(|r| r.status != 200) {
        assert!(
            response.status == 409 || response.status == 401,
            "the other demotion: {}",
            response.status
        );
        response.problem(response.status, "the losing demotion");
    }
    let winner = if a.status == 200 { &a } else { &b };
    let token = winner.consistency_token("demotion");
    let survivor = if a.status == 200 { &first } else { &second };
    let survivor_token = app.login(&survivor.email, &survivor.password).await;
    let list = app.get_after("/v1/users", &survivor_token, &token).await;
    assert_eq!(
        admins(&list),
        vec![survivor.user_id.clone()],
        "{}",
        list.json
    );

    // Promote the other again, then delete each other.
    let demoted = if a.status == 200 { &second } else { &first };
    app.put(
        &format!("/v1/users/{}/role", demoted.user_id),
        &survivor_token,
        json!({"role": "admin"}),
    )
    .await
    .expect(200, "promote again");
    let survivor_token = app.login(&survivor.email, &survivor.password).await;
    let demoted_token = app.login(&demoted.email, &demoted.password).await;
    let (path_a, path_b) = (
        format!("/v1/users/{}", demoted.user_id),
        format!("/v1/users/{}", survivor.user_id),
    );
    let (a, b) = futures::join!(
        app.delete(&path_a, &survivor_token),
        app.delete(&path_b, &demoted_token),
    );
    let statuses = [a.status, b.status];
    assert_eq!(
        statuses.iter().filter(|s| **s == 204).count(),
        1,
        "exactly one deletion succeeds: {statuses:?}"
    );
    let (remaining, remaining_token) = if a.status == 204 {
        (survivor, &survivor_token)
    } else {
        (demoted, &demoted_token)
    };
    let winner = if a.status == 204 { &a } else { &b };
    let token = winner.consistency_token("deletion");
    let list = app.get_after("/v1/users", remaining_token, &token).await;
    list.expect(200, "the remaining admin lists users");
    assert_eq!(
        admins(&list),
        vec![remaining.user_id.clone()],
        "{}",
        list.json
    );
}
both_stacks!(
    last_admin_race,
    last_admin_race_embedded,
    last_admin_race_full_stack
);

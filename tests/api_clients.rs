//! What browser and server-to-server clients need beyond the basics:
//! refresh tokens and logout, API keys, login throttling that locks nobody
//! out, per-credential rate limits, conditional reads, one 422 shape,
//! `Idempotency-Key` misuse, multi-line notes and CORS, on both stacks.
mod common;

use common::{spawn_app, spawn_app_with, Stack, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

async fn tokens(app: &TestApp, email: &str, password: &str) -> Value {
    let response = app
        .json(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await;
    response.expect(200, "login");
    response.json.clone()
}

async fn refresh(app: &TestApp, refresh_token: &Value) -> common::Resp {
    app.json(
        Method::POST,
        "/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": refresh_token})),
    )
    .await
}

async fn refresh_tokens_rotate_and_reuse_ends_the_login(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Sessions").await;
    let login = tokens(&app, &admin.email, &admin.password).await;
    assert!(login["refresh_token"]
        .as_str()
        .unwrap()
        .starts_with("crmr_"));
    assert!(login["refresh_expires_in"].as_u64().unwrap() > 3600);

    // A refresh gives working tokens and spends the old refresh token.
    let first = refresh(&app, &login["refresh_token"]).await;
    first.expect(200, "refresh");
    let access = first.json["access_token"].as_str().unwrap();
    app.get("/v1/me", access)
        .await
        .expect(200, "refreshed access token");
    assert_ne!(first.json["refresh_token"], login["refresh_token"]);
    let second = refresh(&app, &first.json["refresh_token"]).await;
    second.expect(200, "refresh of the rotated token");

    // The spent one used again: refused, and the chain it belongs to ends.
    refresh(&app, &login["refresh_token"])
        .await
        .problem(401, "a spent refresh token");
    refresh(&app, &second.json["refresh_token"])
        .await
        .problem(401, "the newest token after reuse was detected");

    // Another login is another chain, unaffected; logout ends it.
    let other = tokens(&app, &admin.email, &admin.password).await;
    let out = app
        .post(
            "/v1/auth/logout",
            &admin.token,
            json!({"refresh_token": other["refresh_token"]}),
        )
        .await;
    out.expect(204, "logout");
    refresh(&app, &other["refresh_token"])
        .await
        .problem(401, "a logged-out refresh token");
    refresh(&app, &json!("crmr_not-a-token"))
        .await
        .problem(401, "an unknown refresh token");
    app.json(
        Method::POST,
        "/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": 5})),
    )
    .await
    .invalid_field("refresh_token", "a number as the refresh token");

    // A role change ends the user's logins too.
    let user = app.add_user(&admin, "user").await;
    let login = tokens(&app, &user.email, &user.password).await;
    app.put(
        &format!("/v1/users/{}/role", user.user_id),
        &admin.token,
        json!({"role": "admin"}),
    )
    .await
    .expect(200, "promote");
    refresh(&app, &login["refresh_token"])
        .await
        .problem(401, "a refresh token from before a role change");
}

async fn api_keys_act_for_their_company_until_deleted(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Keys").await;
    let other = app.signup("Other").await;
    let user = app.add_user(&admin, "user").await;

    app.post("/v1/api-keys", &user.token, json!({"name": "nope"}))
        .await
        .problem(403, "a plain user creates a key");
    app.post("/v1/api-keys", &admin.token, json!({"name": " "}))
        .await
        .invalid_field("name", "a blank key name");
    let created = app
        .post(
            "/v1/api-keys",
            &admin.token,
            json!({"name": "billing sync"}),
        )
        .await;
    created.expect(201, "create a key");
    let key = created.json["key"].as_str().unwrap().to_owned();
    let id = created.json["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("crmk_"));
    assert_eq!(created.json["name"], "billing sync");

    // The key is a company-scoped admin-level client.
    let customer = app
        .post(
            "/v1/customers",
            &key,
            json!({"name": "Key", "surname": "Made"}),
        )
        .await;
    customer.expect(201, "a key creates a customer");
    let path = format!("/v1/customers/{}", customer.json["id"].as_str().unwrap());
    app.get(&path, &admin.token)
        .await
        .expect(200, "the admin sees it");
    app.get(&path, &other.token)
        .await
        .problem(404, "another company does not");
    app.post(
        "/v1/users",
        &key,
        json!({"email": format!("k-{}@example.com", Uuid::new_v4().simple()), "name": "By", "password": "a long password", "role": "user"}),
    )
    .await
    .expect(201, "a key has admin rights");
    app.get("/v1/me", &key)
        .await
        .problem(403, "a key is not a user");

    // Listed without the secret, only in its company.
    let list = app.get("/v1/api-keys", &admin.token).await;
    list.expect(200, "list keys");
    let items = list.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id.as_str());
    assert!(
        items[0].get("key").is_none(),
        "the key itself is never listed"
    );
    assert!(!list.text().contains(&key));
    let elsewhere = app.get("/v1/api-keys", &other.token).await;
    assert_eq!(elsewhere.json["items"], json!([]));
    app.delete(&format!("/v1/api-keys/{id}"), &other.token)
        .await
        .problem(404, "another company deletes the key");

    // Deleted: refused at once.
    app.delete(&format!("/v1/api-keys/{id}"), &admin.token)
        .await
        .expect(204, "delete the key");
    app.get("/v1/customers", &key)
        .await
        .problem(401, "a deleted key");
    app.get("/v1/customers", "crmk_forged")
        .await
        .problem(401, "an unknown key");

    if stack == Stack::Embedded {
        use std::os::unix::fs::PermissionsExt;
        let key_file = std::fs::metadata(app.data_dir.join("jwt.key")).expect("jwt.key");
        assert_eq!(
            key_file.permissions().mode() & 0o777,
            0o600,
            "the signing key is private"
        );
    }
}

async fn failed_logins_lock_nobody_else_out(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Guessing").await;
    let bystander = app.add_user(&admin, "user").await;
    let mut last = 0;
    for _ in 0..6 {
        let response = app
            .json(
                Method::POST,
                "/v1/auth/token",
                None,
                Some(json!({"email": admin.email, "password": "wrong guess"})),
            )
            .await;
        last = response.status;
        if last == 429 {
            assert!(response.header("retry-after").is_some());
            break;
        }
        assert_eq!(response.status, 401);
    }
    assert_eq!(
        last, 429,
        "guessing one account from one address is refused"
    );
    // Another user behind the same address is not affected.
    tokens(&app, &bystander.email, &bystander.password).await;
}

async fn reads_are_conditional_and_rate_limited(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Caching").await;
    let customer = app
        .create_customer(&admin.token, json!({"name": "Etag", "surname": "Holder"}))
        .await;
    let path = format!("/v1/customers/{}", customer["id"].as_str().unwrap());
    let first = app.get(&path, &admin.token).await;
    first.expect(200, "read");
    let etag = first.header("etag").expect("an ETag");
    let limit = first.header("ratelimit").expect("RateLimit header");
    assert!(limit.contains("remaining="), "{limit}");
    assert!(first.header("ratelimit-policy").is_some());

    let again = app
        .send(
            app.req(Method::GET, &path, Some(&admin.token))
                .header("if-none-match", &etag),
        )
        .await;
    again.expect(304, "If-None-Match with the current ETag");
    assert!(again.bytes.is_empty());
    assert_eq!(again.header("etag").as_deref(), Some(etag.as_str()));
    app.patch(&path, &admin.token, json!({"phone": "+1 555 0100"}))
        .await
        .expect(200, "change it");
    let changed = app
        .send(
            app.req(Method::GET, &path, Some(&admin.token))
                .header("if-none-match", &etag),
        )
        .await;
    changed.expect(200, "If-None-Match with an old ETag");

    // Past the per-credential limit: 429 with Retry-After.
    let limited = spawn_app_with(stack, &[("CRM_RATE_LIMIT_PER_MINUTE", "3")]).await;
    let tenant = limited.signup("Limited").await;
    let mut statuses = vec![];
    for _ in 0..4 {
        statuses.push(limited.get("/v1/customers", &tenant.token).await);
    }
    statuses[3].problem(429, "the fourth request of three allowed");
    assert!(statuses[3].header("retry-after").is_some());
    assert_eq!(
        statuses[3].header("ratelimit-policy").as_deref(),
        Some("3;w=60")
    );
}

async fn body_problems_name_their_field(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Forms").await;
    app.post(
        "/v1/customers",
        &admin.token,
        json!({"name": 123, "surname": "S"}),
    )
    .await
    .invalid_field("name", "a number as the name");
    app.post(
        "/v1/customers",
        &admin.token,
        json!({"name": "N", "surname": "S", "nickname": "x"}),
    )
    .await
    .invalid_field("nickname", "an unknown field");
    let notes = "first line\nsecond line\r\n\tindented";
    let created = app
        .create_customer(
            &admin.token,
            json!({"name": "Multi", "surname": "Line", "notes": notes}),
        )
        .await;
    assert_eq!(created["notes"], notes);
    app.post(
        "/v1/customers",
        &admin.token,
        json!({"name": "N", "surname": "S", "notes": "bell\u{7}"}),
    )
    .await
    .invalid_field("notes", "other control characters in notes");
}

async fn idempotency_keys_refuse_a_different_request(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Keys reused").await;
    let send = |body: Value| {
        app.send(
            app.req(Method::POST, "/v1/customers", Some(&admin.token))
                .header("idempotency-key", "order-17")
                .json(&body),
        )
    };
    let first = send(json!({"name": "Same", "surname": "Body"})).await;
    first.expect(201, "first use of the key");
    let retry = send(json!({"surname": "Body", "name": "Same"})).await;
    retry.expect(201, "a retry of the same request");
    assert_eq!(retry.json["id"], first.json["id"]);
    let other = send(json!({"name": "Other", "surname": "Body"})).await;
    other.invalid_field("Idempotency-Key", "the key with a different body");
    let list = app.get("/v1/customers", &admin.token).await;
    assert_eq!(list.json["items"].as_array().unwrap().len(), 1);

    // An upload's key reused for another file keeps the first file.
    let upload = |bytes: Vec<u8>| {
        let part = reqwest::multipart::Part::bytes(bytes).file_name("p.img");
        app.send(
            app.req(Method::POST, "/v1/photos", Some(&admin.token))
                .header("idempotency-key", "photo-1")
                .multipart(reqwest::multipart::Form::new().part("file", part)),
        )
    };
    let photo = upload(common::png_bytes()).await;
    photo.expect(201, "upload");
    upload(common::gif_bytes())
        .await
        .invalid_field("Idempotency-Key", "the key with another file");
    let bytes = app
        .get(
            &format!("/v1/photos/{}", photo.json["id"].as_str().unwrap()),
            &admin.token,
        )
        .await;
    assert_eq!(
        bytes.bytes,
        common::png_bytes(),
        "the first file's bytes stay"
    );
}

async fn cors_takes_a_wildcard_and_normalises_origins(stack: Stack) {
    for (setting, origin, allowed) in [
        ("*", "https://anywhere.example", "*"),
        (
            "http://LOCALHOST:5173/",
            "http://localhost:5173",
            "http://localhost:5173",
        ),
    ] {
        let app = spawn_app_with(stack, &[("CRM_CORS_ORIGINS", setting)]).await;
        let preflight = app
            .send(
                app.req(Method::OPTIONS, "/v1/customers", None)
                    .header("origin", origin)
                    .header("access-control-request-method", "POST")
                    .header(
                        "access-control-request-headers",
                        "authorization,content-type",
                    ),
            )
            .await;
        assert!(preflight.status < 300, "{setting}: {}", preflight.status);
        assert_eq!(
            preflight.header("access-control-allow-origin").as_deref(),
            Some(allowed),
            "{setting}"
        );
    }
    // A value that is not an origin stops the server with a message.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_crm"))
        .arg("serve")
        .env("CRM_CORS_ORIGINS", "localhost:5173/app")
        .env(
            "CRM_DATA_DIR",
            std::env::temp_dir().join(format!("crm-cors-{}", Uuid::new_v4().simple())),
        )
        .env("CRM_ADDR", "127.0.0.1:0")
        .output()
        .expect("run crm");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CRM_CORS_ORIGINS"), "{stderr}");
}

async fn photo_urls_work_without_a_token_for_their_photo_only(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Images").await;
    let other = app.signup("Elsewhere").await;
    let upload = app
        .upload_photo(&admin.token, common::png_bytes(), None)
        .await;
    upload.expect(201, "upload");
    let url = upload.json["url"].as_str().unwrap().to_owned();
    assert!(url.contains("signature="), "{url}");

    // As an <img src> would fetch it: no Authorization header.
    let image = app.send(app.req(Method::GET, &url, None)).await;
    image.expect(200, "a signed photo URL without a token");
    assert_eq!(image.bytes, common::png_bytes());
    assert_eq!(
        image.header("cross-origin-resource-policy").as_deref(),
        Some("cross-origin")
    );

    // The customer's photo carries a working signed URL too.
    let customer = app
        .create_customer(
            &admin.token,
            json!({"name": "With", "surname": "Face", "photo_id": upload.json["id"]}),
        )
        .await;
    let photo_url = customer["photo"]["url"].as_str().unwrap().to_owned();
    app.send(app.req(Method::GET, &photo_url, None))
        .await
        .expect(200, "a customer's photo URL");

    // Tampering: another photo, another company, a later expiry, no token.
    let theirs = app
        .upload_photo(&other.token, common::gif_bytes(), None)
        .await;
    let their_id = theirs.json["id"].as_str().unwrap();
    let my_id = upload.json["id"].as_str().unwrap();
    let query = url.split_once('?').unwrap().1.to_owned();
    app.send(app.req(Method::GET, &format!("/v1/photos/{their_id}?{query}"), None))
        .await
        .problem(401, "my signature on their photo");
    let their_company = format!("company={}", other.company_id);
    let forged = query.replace(&format!("company={}", admin.company_id), &their_company);
    app.send(app.req(Method::GET, &format!("/v1/photos/{my_id}?{forged}"), None))
        .await
        .problem(401, "my signature with their company");
    let later = query.replace("expires=", "expires=9");
    app.send(app.req(Method::GET, &format!("/v1/photos/{my_id}?{later}"), None))
        .await
        .problem(401, "a pushed-back expiry");
    app.send(app.req(Method::GET, &format!("/v1/photos/{my_id}"), None))
        .await
        .problem(401, "no token and no signature");
    app.send(app.req(Method::GET, &format!("/v1/photos/{my_id}?expires=1"), None))
        .await
        .problem(400, "half a signed URL");

    // A magic number in front of anything is not an image.
    let mut fake = b"\x89PNG\r\n\x1a\n".to_vec();
    fake.extend_from_slice(b"<html><script>alert(1)</script></html>");
    app.upload_photo(&admin.token, fake, None)
        .await
        .problem(415, "PNG magic bytes without a PNG header");
}

both_stacks!(
    photo_urls_work_without_a_token_for_their_photo_only,
    photo_urls_embedded,
    photo_urls_full
);
both_stacks!(
    refresh_tokens_rotate_and_reuse_ends_the_login,
    refresh_tokens_embedded,
    refresh_tokens_full
);
both_stacks!(
    api_keys_act_for_their_company_until_deleted,
    api_keys_embedded,
    api_keys_full
);
both_stacks!(
    failed_logins_lock_nobody_else_out,
    login_throttle_embedded,
    login_throttle_full
);
both_stacks!(
    reads_are_conditional_and_rate_limited,
    conditional_reads_embedded,
    conditional_reads_full
);
both_stacks!(
    body_problems_name_their_field,
    body_problems_embedded,
    body_problems_full
);
both_stacks!(
    idempotency_keys_refuse_a_different_request,
    idempotency_mismatch_embedded,
    idempotency_mismatch_full
);
both_stacks!(
    cors_takes_a_wildcard_and_normalises_origins,
    cors_embedded,
    cors_full
);

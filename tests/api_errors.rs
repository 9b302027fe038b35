//! Error answers: problem+json for every kind of bad input, authentication
//! failures, mass assignment and forged tokens, on both stacks.
mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::{spawn_app, Resp, Stack, Tenant, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

#[track_caller]
fn assert_unauthorized(response: &Resp, what: &str) {
    response.problem(401, what);
    let challenge = response
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("{what}: 401 without WWW-Authenticate"));
    assert!(
        challenge.starts_with("Bearer"),
        "{what}: WWW-Authenticate {challenge:?}"
    );
}

/// Every `/v1` route that needs a token, with a plausible body.
fn protected_routes() -> Vec<(Method, String, Option<Value>)> {
    let id = Uuid::new_v4();
    let user = json!({"name": "X"});
    let customer = json!({"name": "X", "surname": "Y"});
    vec![
        (Method::GET, "/v1/me".into(), None),
        (Method::GET, "/v1/company".into(), None),
        (
            Method::PATCH,
            "/v1/company".into(),
            Some(json!({"name": "X"})),
        ),
        (Method::GET, "/v1/users".into(), None),
        (
            Method::POST,
            "/v1/users".into(),
            Some(
                json!({"email": "x@example.com", "name": "X", "password": "long enough", "role": "user"}),
            ),
        ),
        (Method::GET, format!("/v1/users/{id}"), None),
        (Method::PATCH, format!("/v1/users/{id}"), Some(user)),
        (
            Method::PUT,
            format!("/v1/users/{id}/role"),
            Some(json!({"role": "admin"})),
        ),
        (Method::DELETE, format!("/v1/users/{id}"), None),
        (Method::GET, "/v1/customers".into(), None),
        (Method::POST, "/v1/customers".into(), Some(customer.clone())),
        (Method::GET, format!("/v1/customers/{id}"), None),
        (Method::PATCH, format!("/v1/customers/{id}"), Some(customer)),
        (Method::DELETE, format!("/v1/customers/{id}"), None),
        (Method::POST, format!("/v1/customers/{id}/restore"), None),
        (
            Method::PUT,
            format!("/v1/customers/{id}/photo"),
            Some(json!({"photo_id": id})),
        ),
        (Method::DELETE, format!("/v1/customers/{id}/photo"), None),
        (Method::GET, format!("/v1/customers/{id}/history"), None),
        (Method::POST, "/v1/photos".into(), None),
        (Method::GET, format!("/v1/photos/{id}"), None),
        (Method::GET, format!("/v1/photos/{id}/metadata"), None),
    ]
}

// ---------------------------------------------------------------------------
// problem+json for malformed requests
// ---------------------------------------------------------------------------

async fn malformed_requests(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Errors Inc").await;
    let customer = app
        .create_customer(&admin.token, json!({"name": "Ok", "surname": "Customer"}))
        .await;
    let path = format!("/v1/customers/{}", customer["id"].as_str().unwrap());
    let raw = |method: Method, path: &str, content_type: Option<&str>, body: &str| {
        let mut request = app.req(method, path, Some(&admin.token));
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.body(body.to_owned())
    };

    // Malformed JSON: 400.
    for body in ["{\"name\": ", "not json", "{\"name\": \"a\",}", ""] {
        app.send(raw(
            Method::POST,
            "/v1/customers",
            Some("application/json"),
            body,
        ))
        .await
        .problem(400, &format!("POST malformed JSON {body:?}"));
    }
    app.send(raw(
        Method::PATCH,
        &path,
        Some("application/json"),
        "{\"name\"",
    ))
    .await
    .problem(400, "PATCH malformed JSON");
    app.send(
        app.req(Method::POST, "/v1/signup", None)
            .header("content-type", "application/json")
            .body("{"),
    )
    .await
    .problem(400, "signup malformed JSON");
    app.send(
        app.req(Method::POST, "/v1/auth/token", None)
            .header("content-type", "application/json")
            .body("[1,"),
    )
    .await
    .problem(400, "token malformed JSON");

    // Well-formed JSON of the wrong shape is a 4xx problem, never 5xx.
    for body in [
        json!([]),
        json!("text"),
        json!(42),
        json!(null),
        json!({"name": 5, "surname": "Y"}),
        json!({"name": "X", "surname": ["Y"]}),
        json!({"id": "not-a-uuid", "name": "X", "surname": "Y"}),
        json!({"name": "X", "surname": "Y", "photo_id": 17}),
    ] {
        let response = app.post("/v1/customers", &admin.token, body.clone()).await;
        assert!(
            response.status == 400 || response.status == 422,
            "POST {body}: {} {}",
            response.status,
            response.text()
        );
        response.problem(response.status, &format!("POST {body}"));
    }

    // Wrong or missing content type: 415.
    let body = json!({"name": "X", "surname": "Y"}).to_string();
    app.send(raw(
        Method::POST,
        "/v1/customers",
        Some("text/plain"),
        &body,
    ))
    .await
    .problem(415, "POST text/plain");
    app.send(raw(Method::POST, "/v1/customers", None, &body))
        .await
        .problem(415, "POST without Content-Type");
    app.send(raw(
        Method::POST,
        "/v1/customers",
        Some("application/x-www-form-urlencoded"),
        "name=X&surname=Y",
    ))
    .await
    .problem(415, "POST a form");
    app.send(raw(Method::PATCH, &path, Some("text/plain"), &body))
        .await
        .problem(415, "PATCH text/plain");
    app.send(
        app.req(Method::POST, "/v1/signup", None)
            .header("content-type", "text/xml")
            .body("<signup/>"),
    )
    .await
    .problem(415, "signup as XML");
    app.send(raw(
        Method::POST,
        "/v1/photos",
        Some("application/json"),
        "{\"file\": \"abc\"}",
    ))
    .await
    .problem(415, "photo upload as JSON");

    // A body over the limit: 413.
    let huge = json!({"name": "X", "surname": "Y", "notes": "n".repeat(6 * 1024 * 1024)});
    // Over a raw socket: the server answers before reading it all.
    let authorization = format!("Bearer {}", admin.token);
    app.send_early(
        "POST",
        "/v1/customers",
        &[
            ("Authorization", authorization.as_str()),
            ("Content-Type", "application/json"),
        ],
        huge.to_string().into_bytes(),
    )
    .await
    .problem(413, "a 6 MiB JSON body");

    // Bad path ids: 400.
    for bad in [
        "/v1/customers/not-a-uuid",
        "/v1/customers/123",
        "/v1/customers/not-a-uuid/history",
        "/v1/users/not-a-uuid",
        "/v1/photos/not-a-uuid",
        "/v1/photos/not-a-uuid/metadata",
    ] {
        app.get(bad, &admin.token).await.problem(400, bad);
    }
    app.patch("/v1/customers/xyz", &admin.token, json!({"name": "X"}))
        .await
        .problem(400, "PATCH a bad id");
    app.delete("/v1/customers/xyz", &admin.token)
        .await
        .problem(400, "DELETE a bad id");
    app.put("/v1/users/xyz/role", &admin.token, json!({"role": "user"}))
        .await
        .problem(400, "PUT role of a bad id");

    // Bad query parameters: 400.
    for bad in [
        "/v1/customers?limit=abc",
        "/v1/customers?limit=0",
        "/v1/customers?limit=-5",
        "/v1/customers?limit=1.5",
        "/v1/customers?limit=99999999999999999999999",
        "/v1/customers?sort=name",
        "/v1/customers?sort=",
        "/v1/customers?deleted=yes",
        "/v1/customers?cursor=%%%",
        "/v1/users?limit=x",
    ] {
        app.get(bad, &admin.token).await.problem(400, bad);
    }
    let long_query = format!("/v1/customers?q={}", "a".repeat(5000));
    let response = app.get(&long_query, &admin.token).await;
    assert!(
        response.status < 500,
        "a 5,000-character q: {}",
        response.status
    );

    // Bad headers: 400.
    for (name, value) in [("if-match", "\"not-a-version\""), ("if-match", "garbage")] {
        let response = app
            .send(
                app.req(Method::PATCH, &path, Some(&admin.token))
                    .header(name, value)
                    .json(&json!({"notes": "x"})),
            )
            .await;
        response.problem(400, &format!("PATCH with {name}: {value}"));
    }
    app.send(
        app.req(Method::GET, &path, Some(&admin.token))
            .header("x-consistency-token", "garbage"),
    )
    .await
    .problem(400, "GET with a garbage X-Consistency-Token");
    app.send(
        app.req(Method::POST, "/v1/customers", Some(&admin.token))
            .header("idempotency-key", "k".repeat(300))
            .json(&json!({"name": "X", "surname": "Y"})),
    )
    .await
    .problem(400, "a 300-character Idempotency-Key");
    let unchanged = app.get(&path, &admin.token).await;
    assert_eq!(
        unchanged.json, customer,
        "a refused request changed the customer"
    );

    // Unknown routes: 404; wrong methods: 405.
    for path in [
        "/v1/nope",
        "/nope",
        "/v1/customers/x/y/z",
        "/v2/customers",
        "/v1/customer",
    ] {
        let response = app.get(path, &admin.token).await;
        response.problem(404, path);
    }
    app.send(app.req(Method::GET, "/v1/does-not-exist", None))
        .await
        .problem(404, "unknown route without a token");
    for (method, path) in [
        (Method::DELETE, "/v1/company".to_owned()),
        (Method::PUT, "/v1/customers".to_owned()),
        (Method::DELETE, "/v1/customers".to_owned()),
        (Method::POST, path.clone()),
        (Method::GET, "/v1/signup".to_owned()),
        (Method::GET, "/v1/auth/token".to_owned()),
        (Method::PATCH, "/v1/me".to_owned()),
        (Method::POST, format!("{path}/history")),
        (Method::GET, format!("{path}/restore")),
        (Method::DELETE, "/healthz".to_owned()),
    ] {
        let response = app
            .json(method.clone(), &path, Some(&admin.token), None)
            .await;
        response.problem(405, &format!("{method} {path}"));
    }

    let count = app.get("/v1/customers", &admin.token).await;
    assert_eq!(count.json["items"].as_array().map(Vec::len), Some(1));
}
both_stacks!(
    malformed_requests,
    malformed_requests_embedded,
    malformed_requests_full_stack
);

// ---------------------------------------------------------------------------
// Missing and invalid tokens on every protected route
// ---------------------------------------------------------------------------

async fn authentication_required(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Guarded").await;
    for (method, path, body) in protected_routes() {
        let what = format!("{method} {path}");
        let mut request = app.req(method.clone(), &path, None);
        if let Some(body) = &body {
            request = request.json(body);
        }
        assert_unauthorized(&app.send(request).await, &format!("{what} without a token"));
        for header in [
            "Bearer",
            "Bearer ",
            "Bearer not.a.jwt",
            "Bearer garbage",
            "Basic YWRtaW46YWRtaW4=",
            admin.token.as_str(),
        ] {
            let mut request = app
                .req(method.clone(), &path, None)
                .header("authorization", header);
            if let Some(body) = &body {
                request = request.json(body);
            }
            assert_unauthorized(
                &app.send(request).await,
                &format!("{what} with Authorization: {header:?}"),
            );
        }
    }
    // Public routes answer without a token.
    app.json(
        Method::POST,
        "/v1/auth/token",
        None,
        Some(json!({"email": admin.email, "password": admin.password})),
    )
    .await
    .expect(200, "token without a bearer token");
}
both_stacks!(
    authentication_required,
    authentication_required_embedded,
    authentication_required_full_stack
);

// ---------------------------------------------------------------------------
// Mass assignment
// ---------------------------------------------------------------------------

async fn mass_assignment(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Assigned").await;
    let other = app.signup("Victim").await;
    let user = app.add_user(&admin, "user").await;

    // Creating a customer with server-owned fields: 422, nothing created.
    let injections = [
        ("company_id", json!(other.company_id)),
        ("created_by", json!(other.user_id)),
        ("updated_by", json!(other.user_id)),
        ("version", json!(99)),
        ("role", json!("admin")),
        ("deleted_at", json!("2020-01-01T00:00:00.000Z")),
        ("created_at", json!("2020-01-01T00:00:00.000Z")),
        ("photo", json!({"id": Uuid::new_v4()})),
    ];
    for (field, value) in &injections {
        let id = Uuid::now_v7().to_string();
        let mut body = json!({"id": id, "name": "Sneaky", "surname": "Field"});
        body[*field] = value.clone();
        let response = app.post("/v1/customers", &user.token, body).await;
        response.problem(422, &format!("POST /v1/customers with {field}"));
        app.get(&format!("/v1/customers/{id}"), &admin.token)
            .await
            .problem(404, &format!("the customer refused for {field}"));
        app.get(&format!("/v1/customers/{id}"), &other.token)
            .await
            .problem(
                404,
                &format!("the customer refused for {field}, as the victim"),
            );
    }
    for tenant in [&admin, &other] {
        let list = app.get("/v1/customers", &tenant.token).await;
        assert_eq!(
            list.json["items"].as_array().map(Vec::len),
            Some(0),
            "a refused create left a customer: {}",
            list.json
        );
    }

    // Changing server-owned fields of a customer: 422, nothing changes.
    let customer = app
        .create_customer(&user.token, json!({"name": "Real", "surname": "Customer"}))
        .await;
    let path = format!("/v1/customers/{}", customer["id"].as_str().unwrap());
    for (field, value) in injections
        .iter()
        .chain([("id", json!(Uuid::new_v4()))].iter())
    {
        let mut body = json!({"notes": "changed"});
        body[*field] = value.clone();
        app.patch(&path, &user.token, body)
            .await
            .problem(422, &format!("PATCH customer with {field}"));
    }
    let after = app.get(&path, &admin.token).await;
    assert_eq!(after.json, customer, "a refused patch changed the customer");

    // Users: role is only changed through PUT .../role.
    for token in [&user.token, &admin.token] {
        app.patch(
            &format!("/v1/users/{}", user.user_id),
            token,
            json!({"role": "admin"}),
        )
        .await
        .problem(422, "PATCH user with role");
    }
    app.patch(
        &format!("/v1/users/{}", user.user_id),
        &user.token,
        json!({"name": "Still Bob", "role": "admin"}),
    )
    .await
    .problem(422, "PATCH user with name and role");
    for (field, value) in [
        ("company_id", json!(other.company_id)),
        ("version", json!(7)),
        ("id", json!(Uuid::new_v4())),
        ("password_hash", json!("$argon2id$...")),
    ] {
        let mut body = json!({"name": "Bobby"});
        body[field] = value;
        app.patch(&format!("/v1/users/{}", user.user_id), &user.token, body)
            .await
            .problem(422, &format!("PATCH user with {field}"));
    }
    let me = app.get("/v1/me", &user.token).await;
    me.expect(200, "the user's token still works");
    assert_eq!(me.json["role"], "user");
    assert_eq!(me.json["name"], "Bob");
    assert_eq!(me.json["company_id"], admin.company_id.as_str());

    // Creating a user in another company.
    let email = format!("planted-{}@example.com", Uuid::new_v4().simple());
    app.post(
        "/v1/users",
        &admin.token,
        json!({"email": email, "name": "Planted", "password": "long enough", "role": "user",
               "company_id": other.company_id}),
    )
    .await
    .problem(422, "POST user with company_id");
    let victims = app.get("/v1/users", &other.token).await;
    assert_eq!(victims.json["items"].as_array().map(Vec::len), Some(1));
    let ours = app.get("/v1/users", &admin.token).await;
    assert_eq!(ours.json["items"].as_array().map(Vec::len), Some(2));

    // Signup with a role or a company id.
    for (field, value) in [
        ("role", json!("user")),
        ("company_id", json!(other.company_id)),
    ] {
        let mut body = json!({"company_name": "X", "name": "X", "password": "long enough",
            "email": format!("s-{}@example.com", Uuid::new_v4().simple())});
        body[field] = value;
        app.json(Method::POST, "/v1/signup", None, Some(body))
            .await
            .problem(422, &format!("signup with {field}"));
    }
}
both_stacks!(
    mass_assignment,
    mass_assignment_embedded,
    mass_assignment_full_stack
);

// ---------------------------------------------------------------------------
// Forged tokens
// ---------------------------------------------------------------------------

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT payload");
    serde_json::from_slice(&B64.decode(payload).expect("base64url payload")).expect("JSON claims")
}

fn sign(app: &TestApp, algorithm: jsonwebtoken::Algorithm, claims: &Value) -> String {
    sign_with(&app.jwt_secret(), algorithm, claims)
}

fn sign_with(secret: &[u8], algorithm: jsonwebtoken::Algorithm, claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(algorithm),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .expect("sign")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn assert_token_refused(app: &TestApp, token: &str, what: &str) {
    for path in ["/v1/me", "/v1/customers", "/v1/company"] {
        let response = app.get(path, token).await;
        assert_unauthorized(&response, &format!("{what} on {path}"));
    }
}

async fn forged_tokens(stack: Stack) {
    let app = spawn_app(stack).await;
    let victim: Tenant = app.signup("Victim Corp").await;
    let attacker = app.signup("Attacker Corp").await;
    app.create_customer(
        &victim.token,
        json!({"name": "Secret", "surname": "Customer"}),
    )
    .await;
    let claims = claims_of(&attacker.token);
    assert_eq!(claims["cid"], attacker.company_id.as_str(), "{claims}");

    // Controls: the real token and an honest re-signing work, so the
    // refusals below are about what was changed.
    app.get("/v1/me", &attacker.token)
        .await
        .expect(200, "the real token");
    let resigned = sign(&app, jsonwebtoken::Algorithm::HS256, &claims);
    let me = app.get("/v1/me", &resigned).await;
    me.expect(200, "the same claims signed with the server's key");
    assert_eq!(me.json["id"], attacker.user_id.as_str());

    let parts: Vec<&str> = attacker.token.split('.').collect();
    let encode = |value: &Value| B64.encode(value.to_string());

    // alg none, with and without a signature.
    let none = encode(&json!({"alg": "none", "typ": "JWT"}));
    assert_token_refused(&app, &format!("{none}.{}.", parts[1]), "alg none").await;
    assert_token_refused(
        &app,
        &format!("{none}.{}.{}", parts[1], parts[2]),
        "alg none with a signature",
    )
    .await;
    let none_upper = encode(&json!({"alg": "NONE", "typ": "JWT"}));
    assert_token_refused(&app, &format!("{none_upper}.{}.", parts[1]), "alg NONE").await;

    // Another key; another algorithm with the right key.
    let wrong_key = sign_with(
        b"an-entirely-different-secret-of-32-bytes!",
        jsonwebtoken::Algorithm::HS256,
        &claims,
    );
    assert_token_refused(&app, &wrong_key, "a token signed with another key").await;
    let hs512 = sign(&app, jsonwebtoken::Algorithm::HS512, &claims);
    assert_token_refused(&app, &hs512, "an HS512 token").await;

    // Expired, or without an expiry.
    let mut expired = claims.clone();
    expired["iat"] = json!(now() - 3600);
    expired["exp"] = json!(now() - 60);
    assert_token_refused(
        &app,
        &sign(&app, jsonwebtoken::Algorithm::HS256, &expired),
        "an expired token",
    )
    .await;
    let mut endless = claims.clone();
    endless.as_object_mut().unwrap().remove("exp");
    assert_token_refused(
        &app,
        &sign(&app, jsonwebtoken::Algorithm::HS256, &endless),
        "a token without exp",
    )
    .await;

    // Tampered claims: the victim's company, with the original signature.
    let mut foreign = claims.clone();
    foreign["cid"] = json!(victim.company_id);
    assert_token_refused(
        &app,
        &format!("{}.{}.{}", parts[0], encode(&foreign), parts[2]),
        "cid changed, old signature",
    )
    .await;
    // Even correctly signed, the attacker's user is not in the victim's company.
    let response = app
        .get(
            "/v1/customers",
            &sign(&app, jsonwebtoken::Algorithm::HS256, &foreign),
        )
        .await;
    assert_unauthorized(&response, "cid changed and re-signed");
    assert!(!response.text().contains("Secret"));
    // The victim admin's id, with the attacker's stamp, old signature.
    let mut impersonate = claims.clone();
    impersonate["sub"] = json!(victim.user_id);
    impersonate["cid"] = json!(victim.company_id);
    assert_token_refused(
        &app,
        &format!("{}.{}.{}", parts[0], encode(&impersonate), parts[2]),
        "sub and cid changed, old signature",
    )
    .await;
    // A stamp from the future.
    let mut stamp = claims.clone();
    if let Some(st) = claims["st"].as_i64() {
        stamp["st"] = json!(st + 1);
        assert_token_refused(
            &app,
            &format!("{}.{}.{}", parts[0], encode(&stamp), parts[2]),
            "st changed, old signature",
        )
        .await;
    }
    // A truncated signature.
    let truncated = &attacker.token[..attacker.token.len() - 4];
    assert_token_refused(&app, truncated, "a truncated signature").await;

    // The victim is untouched and still works.
    let list = app.get("/v1/customers", &victim.token).await;
    list.expect(200, "the victim's list");
    assert_eq!(list.json["items"].as_array().map(Vec::len), Some(1));
}
both_stacks!(
    forged_tokens,
    forged_tokens_embedded,
    forged_tokens_full_stack
);

// ---------------------------------------------------------------------------
// Hostile input never gets a 5xx
// ---------------------------------------------------------------------------

async fn hostile_inputs(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Hostile").await;
    let customer = app
        .create_customer(&admin.token, json!({"name": "Plain", "surname": "Target"}))
        .await;
    let path = format!("/v1/customers/{}", customer["id"].as_str().unwrap());

    // NUL and other control characters: refused as invalid fields.
    for (field, body) in [
        ("name", json!({"name": "a\u{0000}b", "surname": "Q"})),
        ("surname", json!({"name": "P", "surname": "\u{0000}"})),
        (
            "notes",
            json!({"name": "P", "surname": "Q", "notes": "x\u{0000}y"}),
        ),
        (
            "email",
            json!({"name": "P", "surname": "Q", "email": "a\u{0000}@b.com"}),
        ),
        (
            "phone",
            json!({"name": "P", "surname": "Q", "phone": "\u{0000}"}),
        ),
    ] {
        app.post("/v1/customers", &admin.token, body)
            .await
            .invalid_field(field, &format!("POST a NUL in {field}"));
        let mut patch = json!({});
        patch[field] = json!("bad\u{0000}value");
        app.patch(&path, &admin.token, patch)
            .await
            .invalid_field(field, &format!("PATCH a NUL in {field}"));
    }
    app.patch(
        &format!("/v1/users/{}", admin.user_id),
        &admin.token,
        json!({"title": "Boss\u{0000}"}),
    )
    .await
    .invalid_field("title", "a NUL in a user's title");
    app.json(
        Method::POST,
        "/v1/signup",
        None,
        Some(json!({"company_name": "Nul", "name": "N", "email": "nul\u{0000}@example.com", "password": "long enough"})),
    )
    .await
    .invalid_field("email", "signup with a NUL in the email");
    // A NUL in a login email is just an unknown email.
    let unknown = app
        .json(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({"email": format!("nobody-{}@example.com", Uuid::new_v4().simple()), "password": "long enough"})),
        )
        .await;
    unknown.problem(401, "an unknown email");
    for email in [
        "a\u{0000}@x.com".to_owned(),
        format!("{}\u{0000}", admin.email),
    ] {
        let response = app
            .json(
                Method::POST,
                "/v1/auth/token",
                None,
                Some(json!({"email": email, "password": "long enough"})),
            )
            .await;
        response.problem(401, "a NUL in the login email");
        assert_eq!(response.bytes, unknown.bytes);
    }

    // Odd searches are searches.
    for q in [
        "%25",
        "_",
        "%27",
        "%27%3B--",
        "%00",
        "a%00b",
        "%F0%9F%98%80",
        "%5C",
        "%E2%80%AE",
        "%22",
        "*",
        "%2A%3F",
        "a+b",
        "%C3%A9%CC%81",
    ] {
        let response = app.get(&format!("/v1/customers?q={q}"), &admin.token).await;
        response.expect(200, &format!("q={q}"));
        assert!(response.json["items"].is_array());
    }

    // Extreme ETags: stale, not a crash.
    for etag in [
        "\"18446744073709551615\"",
        "\"9223372036854775807\"",
        "\"9223372036854775808\"",
        "\"0\"",
    ] {
        let response = app
            .send(
                app.req(Method::PATCH, &path, Some(&admin.token))
                    .header("if-match", etag)
                    .json(&json!({"notes": "n"})),
            )
            .await;
        response.problem(412, &format!("If-Match {etag}"));
    }
    let response = app
        .send(
            app.req(Method::PATCH, &path, Some(&admin.token))
                .header("if-match", "\"99999999999999999999999\"")
                .json(&json!({"notes": "n"})),
        )
        .await;
    assert!(
        response.status == 400 || response.status == 412,
        "an If-Match beyond u64: {}",
        response.status
    );
    let unchanged = app.get(&path, &admin.token).await;
    assert_eq!(
        unchanged.json, customer,
        "a refused request changed the customer"
    );

    // A huge limit is clamped.
    let response = app
        .get("/v1/customers?limit=9223372036854775807", &admin.token)
        .await;
    response.expect(200, "limit=i64::MAX");

    // Odd paths.
    for path in [
        "/v1/customers/%00",
        "/v1/customers/..%2F..%2Fetc%2Fpasswd",
        "/v1/photos/%2e%2e",
    ] {
        let response = app.get(path, &admin.token).await;
        assert!(
            (400..500).contains(&response.status),
            "GET {path}: {}",
            response.status
        );
        response.problem(response.status, path);
    }
}
both_stacks!(
    hostile_inputs,
    hostile_inputs_embedded,
    hostile_inputs_full_stack
);

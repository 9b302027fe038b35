//! Tenancy: another company's ids answer `404` on every route, exactly as ids
//! that do not exist, and change nothing; a plain user gets `403` on admin
//! routes. On both stacks.
mod common;

use common::{png_bytes, spawn_app, Resp, Stack, Tenant, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

/// What company A owns.
struct Owned {
    customer: String,
    deleted_customer: String,
    user: String,
    photo: String,
    attached_photo: String,
}

/// A's state as A sees it.
async fn snapshot(app: &TestApp, a: &Tenant, owned: &Owned) -> Vec<(String, u16, Value)> {
    let mut paths = vec![
        "/v1/company".to_owned(),
        "/v1/me".to_owned(),
        "/v1/users".to_owned(),
        "/v1/customers".to_owned(),
        "/v1/customers?deleted=true".to_owned(),
        format!("/v1/users/{}", owned.user),
    ];
    for customer in [&owned.customer, &owned.deleted_customer] {
        paths.push(format!("/v1/customers/{customer}"));
        paths.push(format!("/v1/customers/{customer}/history"));
    }
    for photo in [&owned.photo, &owned.attached_photo] {
        paths.push(format!("/v1/photos/{photo}/metadata"));
    }
    let mut state = vec![];
    for path in paths {
        let response = app.get(&path, &a.token).await;
        response.expect(200, &format!("A reads {path}"));
        state.push((path, response.status, response.json));
    }
    for photo in [&owned.photo, &owned.attached_photo] {
        let bytes = app
            .send(app.req(Method::GET, &format!("/v1/photos/{photo}"), Some(&a.token)))
            .await;
        bytes.expect(200, "A reads its photo");
        state.push((format!("/v1/photos/{photo}"), 200, json!(bytes.bytes)));
    }
    state
}

/// The cross-company route matrix: `{customer}`, `{user}`, `{photo}` are
/// replaced by the ids under test; `{own_customer}`, `{own_photo}` by B's.
fn routes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/v1/users/{user}", None),
        (
            Method::PATCH,
            "/v1/users/{user}",
            Some(json!({"name": "Pwned"})),
        ),
        (
            Method::PATCH,
            "/v1/users/{user}",
            Some(json!({"password": "pwned password"})),
        ),
        (
            Method::PATCH,
            "/v1/users/{user}",
            Some(json!({"email": "pwned@example.com"})),
        ),
        (
            Method::PUT,
            "/v1/users/{user}/role",
            Some(json!({"role": "user"})),
        ),
        (
            Method::PUT,
            "/v1/users/{user}/role",
            Some(json!({"role": "admin"})),
        ),
        (Method::DELETE, "/v1/users/{user}", None),
        (Method::GET, "/v1/customers/{customer}", None),
        (
            Method::PATCH,
            "/v1/customers/{customer}",
            Some(json!({"name": "Pwned"})),
        ),
        (
            Method::PATCH,
            "/v1/customers/{customer}",
            Some(json!({"email": null})),
        ),
        (Method::DELETE, "/v1/customers/{customer}", None),
        (Method::POST, "/v1/customers/{customer}/restore", None),
        (
            Method::PUT,
            "/v1/customers/{customer}/photo",
            Some(json!({"photo_id": "{own_photo}"})),
        ),
        (
            Method::PUT,
            "/v1/customers/{own_customer}/photo",
            Some(json!({"photo_id": "{photo}"})),
        ),
        (Method::DELETE, "/v1/customers/{customer}/photo", None),
        (Method::GET, "/v1/customers/{customer}/history", None),
        (Method::GET, "/v1/photos/{photo}", None),
        (Method::GET, "/v1/photos/{photo}/metadata", None),
        (
            Method::POST,
            "/v1/customers",
            Some(json!({"name": "Thief", "surname": "B", "photo_id": "{photo}"})),
        ),
    ]
}

fn fill(
    text: &str,
    customer: &str,
    user: &str,
    photo: &str,
    own_customer: &str,
    own_photo: &str,
) -> String {
    text.replace("{customer}", customer)
        .replace("{user}", user)
        .replace("{photo}", photo)
        .replace("{own_customer}", own_customer)
        .replace("{own_photo}", own_photo)
}

async fn call(
    app: &TestApp,
    token: &str,
    method: &Method,
    path: &str,
    body: &Option<String>,
) -> Resp {
    let mut request = app.req(method.clone(), path, Some(token));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.clone());
    }
    app.send(request).await
}

async fn cross_company_matrix(stack: Stack) {
    let app = spawn_app(stack).await;
    let a = app.signup("Alpha").await;
    let b = app.signup("Beta").await;

    // A's resources: a customer with a photo, a deleted customer, a user, a loose photo.
    let a_user = app.add_user(&a, "admin").await;
    let customer = app
        .create_customer(
            &a.token,
            json!({"name": "Alice", "surname": "Secretive", "email": "alice@alpha.test", "notes": "confidential"}),
        )
        .await;
    let customer_id = customer["id"].as_str().unwrap().to_owned();
    let attached = app.upload_photo(&a.token, png_bytes(), None).await;
    attached.expect(201, "A uploads");
    let attached_photo = attached.json["id"].as_str().unwrap().to_owned();
    app.put(
        &format!("/v1/customers/{customer_id}/photo"),
        &a.token,
        json!({"photo_id": attached_photo}),
    )
    .await
    .expect(200, "A attaches");
    let loose = app.upload_photo(&a.token, png_bytes(), None).await;
    loose.expect(201, "A uploads a loose photo");
    let photo = loose.json["id"].as_str().unwrap().to_owned();
    let doomed = app
        .create_customer(&a.token, json!({"name": "Dora", "surname": "Deleted"}))
        .await;
    let deleted_customer = doomed["id"].as_str().unwrap().to_owned();
    app.delete(&format!("/v1/customers/{deleted_customer}"), &a.token)
        .await
        .expect(204, "A deletes");
    let owned = Owned {
        customer: customer_id.clone(),
        deleted_customer: deleted_customer.clone(),
        user: a_user.user_id.clone(),
        photo: photo.clone(),
        attached_photo: attached_photo.clone(),
    };
    // B's own customer and photo, for the mixed routes.
    let own = app
        .create_customer(&b.token, json!({"name": "Bob", "surname": "Beta"}))
        .await;
    let own_customer = own["id"].as_str().unwrap().to_owned();
    let own_photo_response = app.upload_photo(&b.token, png_bytes(), None).await;
    own_photo_response.expect(201, "B uploads");
    let own_photo = own_photo_response.json["id"].as_str().unwrap().to_owned();
    let own_before = app
        .get(&format!("/v1/customers/{own_customer}"), &b.token)
        .await;

    let before = snapshot(&app, &a, &owned).await;
    let secrets = [
        "Alice",
        "Secretive",
        "alice@alpha.test",
        "confidential",
        "Alpha",
        a.company_id.as_str(),
        a_user.email.as_str(),
    ];

    let mut cases = 0;
    for (target_customer, target_photo) in [
        (customer_id.as_str(), photo.as_str()),
        (deleted_customer.as_str(), attached_photo.as_str()),
    ] {
        for (method, template, body) in routes() {
            let body = body.map(|b| b.to_string());
            let path = fill(
                template,
                target_customer,
                &owned.user,
                target_photo,
                &own_customer,
                &own_photo,
            );
            let body_a = body.as_ref().map(|b| {
                fill(
                    b,
                    target_customer,
                    &owned.user,
                    target_photo,
                    &own_customer,
                    &own_photo,
                )
            });
            let what = format!("B: {method} {path} {}", body_a.clone().unwrap_or_default());
            let foreign = call(&app, &b.token, &method, &path, &body_a).await;
            foreign.problem(404, &what);
            for secret in secrets {
                assert!(
                    !foreign.text().contains(secret),
                    "{what}: the answer leaks {secret:?}"
                );
            }
            // Exactly as an id that does not exist.
            let (c, u, p) = (
                Uuid::new_v4().to_string(),
                Uuid::new_v4().to_string(),
                Uuid::new_v4().to_string(),
            );
            let missing_path = fill(template, &c, &u, &p, &own_customer, &own_photo);
            let missing_body = body
                .as_ref()
                .map(|b| fill(b, &c, &u, &p, &own_customer, &own_photo));
            let missing = call(&app, &b.token, &method, &missing_path, &missing_body).await;
            assert_eq!(
                missing.status, foreign.status,
                "{what}: differs from a missing id"
            );
            assert_eq!(
                missing.bytes, foreign.bytes,
                "{what}: body differs from a missing id"
            );
            assert_eq!(
                missing.header("content-type"),
                foreign.header("content-type"),
                "{what}"
            );
            cases += 1;
        }
    }
    assert!(cases >= 38);

    // Uploading for A's customer.
    let upload = app
        .upload_photo(&b.token, png_bytes(), Some(&customer_id))
        .await;
    upload.problem(404, "B uploads a photo for A's customer");

    // B's lists and searches never show A.
    for path in [
        "/v1/customers",
        "/v1/customers?deleted=true",
        "/v1/customers?q=alice",
        "/v1/customers?q=secretive",
        "/v1/customers?q=dora&deleted=true",
        "/v1/users",
    ] {
        let response = app.get(path, &b.token).await;
        response.expect(200, path);
        for secret in secrets {
            assert!(
                !response.text().contains(secret),
                "B's {path} leaks {secret:?}"
            );
        }
    }
    let company = app.get("/v1/company", &b.token).await;
    assert_eq!(company.json["id"], b.company_id.as_str());

    // A is exactly as before; B's own customer too; B did not gain a customer.
    let after = snapshot(&app, &a, &owned).await;
    for ((path, _, was), (_, _, now)) in before.iter().zip(after.iter()) {
        assert_eq!(was, now, "A's {path} changed");
    }
    let own_after = app
        .get(&format!("/v1/customers/{own_customer}"), &b.token)
        .await;
    assert_eq!(own_after.json, own_before.json);
    let b_list = app.get("/v1/customers", &b.token).await;
    assert_eq!(b_list.json["items"].as_array().map(Vec::len), Some(1));
    // A's users still log in.
    app.login(&a_user.email, &a_user.password).await;
}
both_stacks!(
    cross_company_matrix,
    cross_company_matrix_embedded,
    cross_company_matrix_full_stack
);

async fn plain_user_on_admin_routes(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Hierarchy").await;
    let user = app.add_user(&admin, "user").await;
    let colleague = app.add_user(&admin, "user").await;

    let company_before = app.get("/v1/company", &admin.token).await;
    let users_before = app.get("/v1/users", &admin.token).await;
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::PATCH,
            "/v1/company".into(),
            Some(json!({"name": "Mine now"})),
        ),
        (
            Method::POST,
            "/v1/users".into(),
            Some(
                json!({"email": format!("n-{}@example.com", Uuid::new_v4().simple()),
                        "name": "New", "password": "long enough", "role": "admin"}),
            ),
        ),
        (
            Method::PATCH,
            format!("/v1/users/{}", admin.user_id),
            Some(json!({"name": "Demoted"})),
        ),
        (
            Method::PATCH,
            format!("/v1/users/{}", colleague.user_id),
            Some(json!({"password": "pwned password"})),
        ),
        (
            Method::PUT,
            format!("/v1/users/{}/role", user.user_id),
            Some(json!({"role": "admin"})),
        ),
        (
            Method::PUT,
            format!("/v1/users/{}/role", colleague.user_id),
            Some(json!({"role": "admin"})),
        ),
        (
            Method::PUT,
            format!("/v1/users/{}/role", admin.user_id),
            Some(json!({"role": "user"})),
        ),
        (Method::DELETE, format!("/v1/users/{}", admin.user_id), None),
        (
            Method::DELETE,
            format!("/v1/users/{}", colleague.user_id),
            None,
        ),
        (Method::DELETE, format!("/v1/users/{}", user.user_id), None),
    ];
    for (method, path, body) in cases {
        let what = format!("user: {method} {path}");
        app.json(method, &path, Some(&user.token), body)
            .await
            .problem(403, &what);
    }
    assert_eq!(
        app.get("/v1/company", &admin.token).await.json,
        company_before.json
    );
    assert_eq!(
        app.get("/v1/users", &admin.token).await.json,
        users_before.json
    );
    app.get("/v1/me", &user.token)
        .await
        .expect(200, "the user still works");
    app.get("/v1/me", &colleague.token)
        .await
        .expect(200, "the colleague still works");
    // Reads and customer writes are for everyone.
    app.get("/v1/users", &user.token)
        .await
        .expect(200, "user lists users");
    app.get(&format!("/v1/users/{}", admin.user_id), &user.token)
        .await
        .expect(200, "user reads a user");
    app.get("/v1/company", &user.token)
        .await
        .expect(200, "user reads the company");
    app.post(
        "/v1/customers",
        &user.token,
        json!({"name": "Any", "surname": "One"}),
    )
    .await
    .expect(201, "user creates a customer");
}
both_stacks!(
    plain_user_on_admin_routes,
    plain_user_on_admin_routes_embedded,
    plain_user_on_admin_routes_full_stack
);

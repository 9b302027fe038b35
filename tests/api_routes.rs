//! Every route of `docs/API.md`: the happy path and each documented error,
//! on both stacks.
mod common;

use common::{
    gif_bytes, is_rfc3339_utc, png_bytes, spawn_app, spawn_app_with, spawn_process, Resp, Stack,
    TestApp,
};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashSet;
use uuid::Uuid;

fn items(response: &Resp) -> Vec<Value> {
    response.json["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {}", response.json))
        .clone()
}

fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect()
}

fn assert_user_shape(user: &Value, what: &str) {
    for key in [
        "id",
        "company_id",
        "email",
        "name",
        "surname",
        "title",
        "role",
        "created_at",
        "updated_at",
        "version",
    ] {
        assert!(
            user.get(key).is_some(),
            "{what}: user without {key}: {user}"
        );
    }
    let text = user.to_string().to_lowercase();
    assert!(
        !text.contains("password") && !text.contains("argon2") && !text.contains("hash"),
        "{what}: a user must never show a password or hash: {user}"
    );
    assert!(matches!(user["role"].as_str(), Some("admin" | "user")));
    assert!(is_rfc3339_utc(user["created_at"].as_str().unwrap_or("")));
    assert!(is_rfc3339_utc(user["updated_at"].as_str().unwrap_or("")));
    assert!(user["version"].as_i64().is_some_and(|v| v >= 1));
}

fn assert_customer_shape(customer: &Value, what: &str) {
    for key in [
        "id",
        "company_id",
        "name",
        "surname",
        "email",
        "phone",
        "notes",
        "photo",
        "created_by",
        "created_at",
        "updated_by",
        "updated_at",
        "deleted_at",
        "version",
    ] {
        assert!(
            customer.get(key).is_some(),
            "{what}: customer without {key}: {customer}"
        );
    }
    assert!(is_rfc3339_utc(
        customer["created_at"].as_str().unwrap_or("")
    ));
    assert!(is_rfc3339_utc(
        customer["updated_at"].as_str().unwrap_or("")
    ));
    assert!(Uuid::parse_str(customer["id"].as_str().unwrap_or("")).is_ok());
}

// ---------------------------------------------------------------------------
// Signup, token, /v1/me
// ---------------------------------------------------------------------------

async fn signup_and_token(stack: Stack) {
    let app = spawn_app(stack).await;
    let email = format!("Founder-{}@Example.com", Uuid::new_v4().simple());
    let password = "a long enough password";
    let signup = app
        .json(
            Method::POST,
            "/v1/signup",
            None,
            Some(json!({"company_name": "Acme", "name": "Ada", "email": email, "password": password})),
        )
        .await;
    signup.expect(201, "signup");
    signup.consistency_token("signup");
    let body = &signup.json;
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["expires_in"].as_u64().is_some_and(|s| s > 0), "{body}");
    assert_eq!(body["company"]["name"], "Acme");
    assert!(Uuid::parse_str(body["company"]["id"].as_str().unwrap_or("")).is_ok());
    assert!(is_rfc3339_utc(
        body["company"]["created_at"].as_str().unwrap_or("")
    ));
    assert_user_shape(&body["user"], "signup user");
    assert_eq!(body["user"]["role"], "admin");
    assert_eq!(body["user"]["company_id"], body["company"]["id"]);
    assert_eq!(body["user"]["name"], "Ada");
    let user_id = body["user"]["id"].as_str().unwrap().to_owned();
    let token = body["access_token"].as_str().unwrap().to_owned();

    // The token works at once.
    let me = app.get("/v1/me", &token).await;
    me.expect(200, "me");
    assert_eq!(me.json["id"], user_id.as_str());
    assert_eq!(me.json["role"], "admin");
    assert_user_shape(&me.json, "me");
    assert_eq!(me.etag_version("me"), me.json["version"].as_i64().unwrap());

    // Emails are unique across the service, case-insensitively.
    let duplicate = app
        .json(
            Method::POST,
            "/v1/signup",
            None,
            Some(json!({"company_name": "Other", "name": "Eve", "email": email.to_uppercase(), "password": password})),
        )
        .await;
    duplicate.problem(409, "signup with a taken email");

    // Validation: every bad field is listed.
    let invalid = app
        .json(
            Method::POST,
            "/v1/signup",
            None,
            Some(json!({"company_name": "", "name": "Eve", "email": "not-an-email", "password": password})),
        )
        .await;
    invalid.invalid_field("email", "signup with a bad email");
    invalid.invalid_field("company_name", "signup with a blank company name");
    let missing = app
        .json(
            Method::POST,
            "/v1/signup",
            None,
            Some(json!({"name": "Eve"})),
        )
        .await;
    missing.invalid_field("company_name", "signup without company_name");
    missing.invalid_field("email", "signup without email");
    missing.invalid_field("password", "signup without password");
    let short = app
        .json(
            Method::POST,
            "/v1/signup",
            None,
            Some(json!({"company_name": "Short", "name": "Eve",
                "email": format!("eve-{}@example.com", Uuid::new_v4().simple()), "password": "1234567"})),
        )
        .await;
    short.invalid_field("password", "signup with a 7-character password");

    // Token: right credentials, with the email in any case.
    let login = app
        .json(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({"email": email.to_lowercase(), "password": password})),
        )
        .await;
    login.expect(200, "token");
    assert_eq!(login.json["token_type"], "Bearer");
    assert!(login.json["expires_in"].as_u64().is_some_and(|s| s > 0));
    let login_token = login.json["access_token"].as_str().expect("access_token");
    let me = app.get("/v1/me", login_token).await;
    me.expect(200, "me with a login token");
    assert_eq!(me.json["id"], user_id.as_str());

    // Wrong password and unknown email answer exactly the same.
    let wrong_password = app
        .json(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({"email": email, "password": "not the password"})),
        )
        .await;
    wrong_password.problem(401, "token with a wrong password");
    let unknown_email = app
        .json(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({"email": format!("nobody-{}@example.com", Uuid::new_v4().simple()), "password": "not the password"})),
        )
        .await;
    unknown_email.problem(401, "token with an unknown email");
    assert_eq!(
        wrong_password.bytes, unknown_email.bytes,
        "wrong password and unknown email must answer byte-identical bodies"
    );
    assert_eq!(
        wrong_password.header("content-type"),
        unknown_email.header("content-type")
    );
    assert_eq!(
        wrong_password.header("www-authenticate"),
        unknown_email.header("www-authenticate")
    );
}
async fn signup_disabled(stack: Stack) {
    let app = spawn_app_with(stack, &[("CRM_SIGNUP_ENABLED", "false")]).await;
    let email = format!("closed-{}@example.com", Uuid::new_v4().simple());
    let refused = app
        .json(
            Method::POST,
            "/v1/signup",
            None,
            Some(json!({"company_name": "Closed", "name": "Ada", "email": email, "password": "long enough"})),
        )
        .await;
    assert!(
        refused.status == 403 || refused.status == 404,
        "signup while disabled: {} {}",
        refused.status,
        refused.text()
    );
    refused.problem(refused.status, "signup while disabled");
    app.json(
        Method::POST,
        "/v1/auth/token",
        None,
        Some(json!({"email": email, "password": "long enough"})),
    )
    .await
    .problem(401, "no account was created");
}
both_stacks!(
    signup_disabled,
    signup_disabled_embedded,
    signup_disabled_full_stack
);

both_stacks!(
    signup_and_token,
    signup_and_token_embedded,
    signup_and_token_full_stack
);

async fn login_rate_limit(stack: Stack) {
    let app = spawn_app(stack).await;
    let tenant = app.signup("Limited").await;
    let mut statuses = vec![];
    let mut limited = None;
    for _ in 0..30 {
        let response = app
            .json(
                Method::POST,
                "/v1/auth/token",
                None,
                Some(json!({"email": tenant.email, "password": "wrong password!"})),
            )
            .await;
        statuses.push(response.status);
        if response.status == 429 {
            limited = Some(response);
            break;
        }
        response.problem(401, "a failed login before the limit");
    }
    let limited = limited.unwrap_or_else(|| panic!("no 429 after {statuses:?}"));
    limited.problem(429, "too many failed logins");
    let retry_after = limited
        .header("retry-after")
        .expect("429 without Retry-After");
    assert!(
        retry_after.parse::<u64>().is_ok_and(|s| s > 0),
        "Retry-After {retry_after:?} is not a positive number of seconds"
    );
}
both_stacks!(
    login_rate_limit,
    login_rate_limit_embedded,
    login_rate_limit_full_stack
);

// ---------------------------------------------------------------------------
// Company
// ---------------------------------------------------------------------------

async fn company(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Initech").await;
    let user = app.add_user(&admin, "user").await;

    let company = app.get("/v1/company", &admin.token).await;
    company.expect(200, "get company");
    assert_eq!(company.json["id"], admin.company_id.as_str());
    assert_eq!(company.json["name"], "Initech");
    assert!(is_rfc3339_utc(
        company.json["created_at"].as_str().unwrap_or("")
    ));
    let company_version = company.etag_version("get company");
    let as_user = app.get("/v1/company", &user.token).await;
    as_user.expect(200, "a user reads the company");
    assert_eq!(as_user.json, company.json);

    let renamed = app
        .patch("/v1/company", &admin.token, json!({"name": "Initrode"}))
        .await;
    renamed.expect(200, "rename company");
    let token = renamed.consistency_token("rename company");
    assert_eq!(renamed.json["name"], "Initrode");
    assert_eq!(renamed.json["id"], admin.company_id.as_str());
    assert_eq!(renamed.json["created_at"], company.json["created_at"]);
    assert_eq!(renamed.etag_version("rename company"), company_version + 1);
    let after = app.get_after("/v1/company", &admin.token, &token).await;
    assert_eq!(after.json["name"], "Initrode");

    app.patch("/v1/company", &admin.token, json!({"name": "  "}))
        .await
        .invalid_field("name", "blank company name");
    app.patch("/v1/company", &admin.token, json!({}))
        .await
        .invalid_field("name", "rename without a name");
    app.patch(
        "/v1/company",
        &admin.token,
        json!({"name": "X", "id": Uuid::new_v4()}),
    )
    .await
    .problem(422, "rename with an unknown field");
    app.patch("/v1/company", &user.token, json!({"name": "Hijacked"}))
        .await
        .problem(403, "a user renames the company");
    let unchanged = app.get("/v1/company", &admin.token).await;
    assert_eq!(unchanged.json["name"], "Initrode");
}
both_stacks!(company, company_embedded, company_full_stack);

// ---------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------

/// A company with its admin and one plain user, Carol (password "first
/// password"), as a scenario about users starts.
struct WithCarol {
    app: TestApp,
    admin: common::Tenant,
    carol_id: String,
    email: String,
    created: Resp,
}

async fn with_carol(stack: Stack) -> WithCarol {
    let app = spawn_app(stack).await;
    let admin = app.signup("Umbrella").await;
    let email = format!("Carol-{}@Example.com", Uuid::new_v4().simple());
    let created = app
        .post(
            "/v1/users",
            &admin.token,
            json!({"email": email, "name": "Carol", "surname": "Danvers", "title": "Captain",
                   "password": "first password", "role": "user"}),
        )
        .await;
    created.expect(201, "create user");
    let carol_id = created.json["id"].as_str().expect("id").to_owned();
    WithCarol {
        app,
        admin,
        carol_id,
        email,
        created,
    }
}

async fn users_are_created_read_and_listed(stack: Stack) {
    let WithCarol {
        app,
        admin,
        email,
        created,
        ..
    } = with_carol(stack).await;
    created.consistency_token("create user");
    let carol_id = created.json["id"].as_str().expect("id").to_owned();
    assert!(
        created
            .header("location")
            .is_some_and(|l| l.ends_with(&format!("/v1/users/{carol_id}"))),
        "Location {:?}",
        created.header("location")
    );
    assert_eq!(
        created.etag_version("create user"),
        created.json["version"].as_i64().unwrap()
    );
    assert_user_shape(&created.json, "created user");
    assert_eq!(created.json["company_id"], admin.company_id.as_str());
    assert_eq!(created.json["role"], "user");
    assert_eq!(created.json["surname"], "Danvers");
    assert_eq!(created.json["title"], "Captain");

    // Duplicate emails, any case, of any user.
    app.post(
        "/v1/users",
        &admin.token,
        json!({"email": email.to_lowercase(), "name": "Dup", "password": "whatever123", "role": "user"}),
    )
    .await
    .problem(409, "create user with a taken email");
    app.post(
        "/v1/users",
        &admin.token,
        json!({"email": admin.email.to_uppercase(), "name": "Dup", "password": "whatever123", "role": "user"}),
    )
    .await
    .problem(409, "create user with the admin's email");
    // Validation.
    app.post(
        "/v1/users",
        &admin.token,
        json!({"email": "x@example.com", "name": "X", "password": "short", "role": "user"}),
    )
    .await
    .invalid_field("password", "create user with a short password");
    app.post(
        "/v1/users",
        &admin.token,
        json!({"email": "x@example.com", "name": "X", "password": "long enough", "role": "root"}),
    )
    .await
    .invalid_field("role", "create user with an unknown role");
    app.post(
        "/v1/users",
        &admin.token,
        json!({"email": "nope", "name": "", "password": "long enough"}),
    )
    .await
    .invalid_field("email", "create user with a bad email")
    .invalid_field("name", "create user with a blank name")
    .invalid_field("role", "create user without a role");

    // Read.
    let one = app
        .get(&format!("/v1/users/{carol_id}"), &admin.token)
        .await;
    one.expect(200, "get user");
    assert_eq!(one.json, created.json);
    assert_eq!(
        one.etag_version("get user"),
        one.json["version"].as_i64().unwrap()
    );
    app.get(&format!("/v1/users/{}", Uuid::new_v4()), &admin.token)
        .await
        .problem(404, "get an unknown user");
    let list = app.get("/v1/users", &admin.token).await;
    list.expect(200, "list users");
    let listed = ids(&items(&list));
    assert_eq!(listed.len(), 2, "{}", list.json);
    assert!(listed.contains(&carol_id) && listed.contains(&admin.user_id));
    assert!(list.json.get("next_cursor").is_some());
    for user in items(&list) {
        assert_user_shape(&user, "listed user");
    }
    // Pagination of users.
    let first = app.get("/v1/users?limit=1", &admin.token).await;
    first.expect(200, "users page 1");
    assert_eq!(items(&first).len(), 1);
    let cursor = first.json["next_cursor"]
        .as_str()
        .expect("next_cursor")
        .to_owned();
    let second = app
        .get(&format!("/v1/users?limit=1&cursor={cursor}"), &admin.token)
        .await;
    second.expect(200, "users page 2");
    let mut paged = ids(&items(&first));
    paged.extend(ids(&items(&second)));
    if let Some(cursor) = second.json["next_cursor"].as_str() {
        let third = app
            .get(&format!("/v1/users?limit=1&cursor={cursor}"), &admin.token)
            .await;
        third.expect(200, "users page 3");
        assert!(items(&third).is_empty());
        assert!(third.json["next_cursor"].is_null());
    }
    assert_eq!(paged, listed, "users pages differ from the full list");
}
both_stacks!(
    users_are_created_read_and_listed,
    users_created_embedded,
    users_created_full_stack
);

async fn a_user_changes_itself_but_not_others(stack: Stack) {
    let WithCarol {
        app,
        admin,
        carol_id,
        email,
        created,
    } = with_carol(stack).await;
    // The user logs in and works on itself, but not on others.
    let carol_token = app.login(&email, "first password").await;
    let me = app.get("/v1/me", &carol_token).await;
    assert_eq!(me.json["id"], carol_id.as_str());
    let list_as_user = app.get("/v1/users", &carol_token).await;
    list_as_user.expect(200, "a user lists users");
    let own = app
        .patch(
            &format!("/v1/users/{carol_id}"),
            &carol_token,
            json!({"name": "Carol Susan", "title": null}),
        )
        .await;
    own.expect(200, "a user changes its own profile");
    own.consistency_token("patch user");
    assert_eq!(
        own.etag_version("patch user"),
        own.json["version"].as_i64().unwrap()
    );
    assert_eq!(own.json["name"], "Carol Susan");
    assert!(
        own.json["title"].is_null(),
        "title null clears it: {}",
        own.json
    );
    assert_eq!(own.json["surname"], "Danvers");
    assert!(own.json["version"].as_i64() > created.json["version"].as_i64());
    app.patch(
        &format!("/v1/users/{}", admin.user_id),
        &carol_token,
        json!({"name": "Mallory"}),
    )
    .await
    .problem(403, "a user changes another user");
    app.post(
        "/v1/users",
        &carol_token,
        json!({"email": format!("x-{}@example.com", Uuid::new_v4().simple()), "name": "X", "password": "long enough", "role": "admin"}),
    )
    .await
    .problem(403, "a user creates a user");
    app.put(
        &format!("/v1/users/{carol_id}/role"),
        &carol_token,
        json!({"role": "admin"}),
    )
    .await
    .problem(403, "a user makes itself admin");
    app.delete(&format!("/v1/users/{}", admin.user_id), &carol_token)
        .await
        .problem(403, "a user deletes an admin");
    let admin_me = app.get("/v1/me", &admin.token).await;
    assert_eq!(admin_me.json["name"], "Ada");
    assert_eq!(admin_me.json["role"], "admin");
}
both_stacks!(
    a_user_changes_itself_but_not_others,
    users_self_service_embedded,
    users_self_service_full_stack
);

async fn admins_change_users_but_keep_the_last_admin(stack: Stack) {
    let WithCarol {
        app,
        admin,
        carol_id,
        ..
    } = with_carol(stack).await;
    // Admin changes another user; email changes keep uniqueness.
    let by_admin = app
        .patch(
            &format!("/v1/users/{carol_id}"),
            &admin.token,
            json!({"surname": null, "title": "Major"}),
        )
        .await;
    by_admin.expect(200, "admin changes a user");
    assert!(by_admin.json["surname"].is_null());
    assert_eq!(by_admin.json["title"], "Major");
    app.patch(
        &format!("/v1/users/{carol_id}"),
        &admin.token,
        json!({"email": admin.email.to_uppercase()}),
    )
    .await
    .problem(409, "change a user's email to a taken one");
    app.patch(
        &format!("/v1/users/{carol_id}"),
        &admin.token,
        json!({"email": "not an email"}),
    )
    .await
    .invalid_field("email", "change a user's email to an invalid one");
    app.patch(
        &format!("/v1/users/{carol_id}"),
        &admin.token,
        json!({"password": "short"}),
    )
    .await
    .invalid_field("password", "change a password to a short one");
    for field in ["name", "email", "password"] {
        app.patch(
            &format!("/v1/users/{carol_id}"),
            &admin.token,
            json!({ field: null }),
        )
        .await
        .invalid_field(field, &format!("set a user's {field} to null"));
    }
    app.patch(
        &format!("/v1/users/{}", Uuid::new_v4()),
        &admin.token,
        json!({"name": "Ghost"}),
    )
    .await
    .problem(404, "patch an unknown user");
    let new_email = format!("carol.new-{}@example.com", Uuid::new_v4().simple());
    let moved = app
        .patch(
            &format!("/v1/users/{carol_id}"),
            &admin.token,
            json!({"email": new_email}),
        )
        .await;
    moved.expect(200, "change a user's email");
    assert_eq!(
        moved.json["email"].as_str().map(str::to_lowercase),
        Some(new_email.clone())
    );

    // The last admin can be neither demoted nor removed.
    app.put(
        &format!("/v1/users/{}/role", admin.user_id),
        &admin.token,
        json!({"role": "user"}),
    )
    .await
    .problem(409, "demote the last admin");
    app.delete(&format!("/v1/users/{}", admin.user_id), &admin.token)
        .await
        .problem(409, "delete the last admin");
    app.put(
        &format!("/v1/users/{carol_id}/role"),
        &admin.token,
        json!({"role": "superuser"}),
    )
    .await
    .invalid_field("role", "change to an unknown role");
    app.put(
        &format!("/v1/users/{}/role", Uuid::new_v4()),
        &admin.token,
        json!({"role": "admin"}),
    )
    .await
    .problem(404, "change the role of an unknown user");
}
both_stacks!(
    admins_change_users_but_keep_the_last_admin,
    users_by_admin_embedded,
    users_by_admin_full_stack
);

async fn role_and_password_changes_end_sessions(stack: Stack) {
    let WithCarol {
        app,
        admin,
        carol_id,
        email,
        ..
    } = with_carol(stack).await;
    // A role change ends the user's tokens.
    let carol_token = app.login(&email, "first password").await;
    let promoted = app
        .put(
            &format!("/v1/users/{carol_id}/role"),
            &admin.token,
            json!({"role": "admin"}),
        )
        .await;
    promoted.expect(200, "promote a user");
    promoted.consistency_token("change role");
    assert_eq!(
        promoted.etag_version("change role"),
        promoted.json["version"].as_i64().unwrap()
    );
    assert_eq!(promoted.json["role"], "admin");
    app.get("/v1/me", &carol_token)
        .await
        .problem(401, "a token from before a role change");
    let carol_token = app.login(&email, "first password").await;
    let me = app.get("/v1/me", &carol_token).await;
    assert_eq!(me.json["role"], "admin");
    // With two admins one may be demoted.
    let demoted = app
        .put(
            &format!("/v1/users/{carol_id}/role"),
            &admin.token,
            json!({"role": "user"}),
        )
        .await;
    demoted.expect(200, "demote one of two admins");
    assert_eq!(demoted.json["role"], "user");

    // A password change ends the user's tokens.
    let carol_token = app.login(&email, "first password").await;
    let changed = app
        .patch(
            &format!("/v1/users/{carol_id}"),
            &carol_token,
            json!({"password": "second password"}),
        )
        .await;
    changed.expect(200, "change own password");
    app.get("/v1/me", &carol_token)
        .await
        .problem(401, "a token from before a password change");
    let wrong = app
        .json(
            Method::POST,
            "/v1/auth/token",
            None,
            Some(json!({"email": email, "password": "first password"})),
        )
        .await;
    wrong.problem(401, "login with the old password");
    // The new password works (login asserts it).
    app.login(&email, "second password").await;
}
both_stacks!(
    role_and_password_changes_end_sessions,
    users_sessions_embedded,
    users_sessions_full_stack
);

async fn deleting_a_user_ends_its_sessions(stack: Stack) {
    let WithCarol {
        app,
        admin,
        carol_id,
        email,
        ..
    } = with_carol(stack).await;
    let carol_token = app.login(&email, "first password").await;
    // Delete: 204, tokens die at once, the user is gone.
    let deleted = app
        .delete(&format!("/v1/users/{carol_id}"), &admin.token)
        .await;
    deleted.expect(204, "delete user");
    let token = deleted.consistency_token("delete user");
    assert!(deleted.bytes.is_empty());
    app.get("/v1/me", &carol_token)
        .await
        .problem(401, "the token of a deleted user");
    app.get_after(&format!("/v1/users/{carol_id}"), &admin.token, &token)
        .await
        .problem(404, "get a deleted user");
    let list = app.get_after("/v1/users", &admin.token, &token).await;
    assert_eq!(ids(&items(&list)), vec![admin.user_id.clone()]);
    app.delete(&format!("/v1/users/{carol_id}"), &admin.token)
        .await
        .problem(404, "delete a deleted user");
    app.delete(&format!("/v1/users/{}", Uuid::new_v4()), &admin.token)
        .await
        .problem(404, "delete an unknown user");
}
both_stacks!(
    deleting_a_user_ends_its_sessions,
    users_deleted_embedded,
    users_deleted_full_stack
);

// ---------------------------------------------------------------------------
// Customers
// ---------------------------------------------------------------------------

/// Globex, with an admin and a plain user, and Homer, a customer its admin
/// created (the reply to that create).
struct WithHomer {
    app: TestApp,
    admin: common::Tenant,
    user: common::Tenant,
    created: Resp,
}

async fn with_homer(stack: Stack) -> WithHomer {
    let app = spawn_app(stack).await;
    let admin = app.signup("Globex").await;
    let user = app.add_user(&admin, "user").await;
    let created = app
        .post(
            "/v1/customers",
            &admin.token,
            json!({"name": "Homer", "surname": "Simpson", "email": "homer@example.com",
                   "phone": "+1 555 0100", "notes": "Likes donuts"}),
        )
        .await;
    created.expect(201, "create customer");
    WithHomer {
        app,
        admin,
        user,
        created,
    }
}

async fn customers_are_created_and_read(stack: Stack) {
    let WithHomer {
        app,
        admin,
        user,
        created,
    } = with_homer(stack).await;
    let other = app.signup("Hooli").await;
    created.consistency_token("create customer");
    let customer = created.json.clone();
    assert_customer_shape(&customer, "created customer");
    let id = customer["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/customers/{id}");
    assert!(
        created
            .header("location")
            .is_some_and(|l| l.ends_with(&path)),
        "Location {:?}",
        created.header("location")
    );
    assert_eq!(
        created.etag_version("create customer"),
        customer["version"].as_i64().unwrap()
    );
    assert_eq!(customer["company_id"], admin.company_id.as_str());
    assert_eq!(customer["created_by"], admin.user_id.as_str());
    assert_eq!(customer["updated_by"], admin.user_id.as_str());
    assert_eq!(customer["name"], "Homer");
    assert_eq!(customer["surname"], "Simpson");
    assert_eq!(customer["email"], "homer@example.com");
    assert_eq!(customer["phone"], "+1 555 0100");
    assert_eq!(customer["notes"], "Likes donuts");
    assert!(customer["photo"].is_null());
    assert!(customer["deleted_at"].is_null());

    // Read.
    let read = app.get(&path, &user.token).await;
    read.expect(200, "get customer");
    assert_eq!(read.json, customer);
    assert_eq!(
        read.etag_version("get customer"),
        customer["version"].as_i64().unwrap()
    );
    app.get(&format!("/v1/customers/{}", Uuid::new_v4()), &admin.token)
        .await
        .problem(404, "get an unknown customer");

    // Client-chosen ids; a taken id is 409, in this company or another.
    let chosen = Uuid::now_v7().to_string();
    let with_id = app
        .post(
            "/v1/customers",
            &user.token,
            json!({"id": chosen, "name": "Marge", "surname": "Simpson"}),
        )
        .await;
    with_id.expect(201, "create with a chosen id");
    assert_eq!(with_id.json["id"], chosen.as_str());
    assert_eq!(with_id.json["created_by"], user.user_id.as_str());
    assert!(
        with_id.json["email"].is_null()
            && with_id.json["phone"].is_null()
            && with_id.json["notes"].is_null()
    );
    let taken = app
        .post(
            "/v1/customers",
            &admin.token,
            json!({"id": chosen, "name": "Bart", "surname": "Simpson"}),
        )
        .await;
    taken.problem(409, "create with a taken id");
    let foreign = app
        .post(
            "/v1/customers",
            &other.token,
            json!({"id": chosen, "name": "Gavin", "surname": "Belson"}),
        )
        .await;
    foreign.problem(409, "create with an id another company holds");
    assert!(
        !foreign.text().contains("Marge"),
        "the 409 leaks the other customer"
    );
    let still = app
        .get(&format!("/v1/customers/{chosen}"), &admin.token)
        .await;
    assert_eq!(still.json["name"], "Marge");
    app.get(&format!("/v1/customers/{chosen}"), &other.token)
        .await
        .problem(404, "the other company cannot see it");
}
both_stacks!(
    customers_are_created_and_read,
    customers_created_embedded,
    customers_created_full_stack
);

async fn invalid_customers_are_refused(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Globex").await;
    app.post("/v1/customers", &admin.token, json!({"name": "Lisa"}))
        .await
        .invalid_field("surname", "create without surname");
    app.post(
        "/v1/customers",
        &admin.token,
        json!({"name": " ", "surname": "Simpson"}),
    )
    .await
    .invalid_field("name", "create with a blank name");
    app.post(
        "/v1/customers",
        &admin.token,
        json!({"name": "x".repeat(201), "surname": "Simpson"}),
    )
    .await
    .invalid_field("name", "create with a 201-character name");
    let at_limit = app
        .post(
            "/v1/customers",
            &admin.token,
            json!({"name": "é".repeat(200), "surname": "y".repeat(200), "notes": "n".repeat(10_000)}),
        )
        .await;
    at_limit.expect(201, "create at the length limits");
    app.post(
        "/v1/customers",
        &admin.token,
        json!({"name": "Lisa", "surname": "Simpson", "email": "lisa-at-example"}),
    )
    .await
    .invalid_field("email", "create with a bad email");
    app.post(
        "/v1/customers",
        &admin.token,
        json!({"name": "Lisa", "surname": "Simpson", "notes": "n".repeat(10_001)}),
    )
    .await
    .invalid_field("notes", "create with 10,001 characters of notes");
    app.post(
        "/v1/customers",
        &admin.token,
        json!({"name": "Lisa", "surname": "Simpson", "nickname": "Lis"}),
    )
    .await
    .problem(422, "create with an unknown field");
}
both_stacks!(
    invalid_customers_are_refused,
    customers_invalid_embedded,
    customers_invalid_full_stack
);

/// Patched by the user, deleted by the user, restored by the admin: each
/// step as the reads and the history show it.
async fn a_customer_is_patched_deleted_restored_and_has_a_history(stack: Stack) {
    let WithHomer {
        app,
        admin,
        user,
        created,
    } = with_homer(stack).await;
    let customer = created.json.clone();
    let id = customer["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/customers/{id}");
    // Patch: a subset; null clears an optional field; read-your-writes.
    let patched = app
        .patch(
            &path,
            &user.token,
            json!({"email": null, "phone": "+1 555 0199"}),
        )
        .await;
    patched.expect(200, "patch customer");
    let token = patched.consistency_token("patch customer");
    assert!(patched.json["email"].is_null(), "{}", patched.json);
    assert_eq!(patched.json["phone"], "+1 555 0199");
    assert_eq!(patched.json["name"], "Homer");
    assert_eq!(patched.json["notes"], "Likes donuts");
    assert_eq!(patched.json["updated_by"], user.user_id.as_str());
    assert_eq!(patched.json["created_by"], admin.user_id.as_str());
    assert_eq!(patched.json["created_at"], customer["created_at"]);
    let version = patched.json["version"].as_i64().unwrap();
    assert!(version > customer["version"].as_i64().unwrap());
    assert_eq!(patched.etag_version("patch customer"), version);
    let seen = app.get_after(&path, &admin.token, &token).await;
    seen.expect(200, "read after patch");
    assert!(seen.json["email"].is_null());
    assert_eq!(seen.json["phone"], "+1 555 0199");
    assert_eq!(seen.json["version"], version);

    // Patch errors change nothing.
    app.patch(&path, &admin.token, json!({"name": null}))
        .await
        .invalid_field("name", "patch name to null");
    app.patch(&path, &admin.token, json!({"surname": null, "notes": "x"}))
        .await
        .invalid_field("surname", "patch surname to null");
    app.patch(&path, &admin.token, json!({"name": ""}))
        .await
        .invalid_field("name", "patch name to blank");
    app.patch(&path, &admin.token, json!({"email": "nope"}))
        .await
        .invalid_field("email", "patch a bad email");
    app.patch(&path, &admin.token, json!({"nickname": "Homie"}))
        .await
        .problem(422, "patch with an unknown field");
    app.patch(
        &format!("/v1/customers/{}", Uuid::new_v4()),
        &admin.token,
        json!({"name": "Ghost"}),
    )
    .await
    .problem(404, "patch an unknown customer");
    let unchanged = app.get(&path, &admin.token).await;
    assert_eq!(
        unchanged.json, seen.json,
        "a refused patch changed the customer"
    );

    // Soft delete.
    let deleted = app.delete(&path, &user.token).await;
    deleted.expect(204, "delete customer");
    let token = deleted.consistency_token("delete customer");
    let list = app.get_after("/v1/customers", &admin.token, &token).await;
    list.expect(200, "list after delete");
    assert!(
        !ids(&items(&list)).contains(&id),
        "a deleted customer is listed"
    );
    let gone = app
        .get_after("/v1/customers?deleted=true", &admin.token, &token)
        .await;
    gone.expect(200, "list deleted");
    assert_eq!(ids(&items(&gone)), vec![id.clone()]);
    let shown = app.get_after(&path, &admin.token, &token).await;
    shown.expect(200, "get a deleted customer");
    assert!(
        shown.json["deleted_at"]
            .as_str()
            .is_some_and(is_rfc3339_utc),
        "{}",
        shown.json
    );
    assert_eq!(shown.json["updated_by"], user.user_id.as_str());
    app.patch(&path, &admin.token, json!({"name": "Zombie"}))
        .await
        .problem(409, "patch a deleted customer");
    app.delete(&format!("/v1/customers/{}", Uuid::new_v4()), &admin.token)
        .await
        .problem(404, "delete an unknown customer");

    // Restore.
    let restored = app
        .json(
            Method::POST,
            &format!("{path}/restore"),
            Some(&admin.token),
            None,
        )
        .await;
    restored.expect(200, "restore");
    let token = restored.consistency_token("restore");
    assert!(restored.json["deleted_at"].is_null());
    assert_eq!(restored.json["name"], "Homer");
    assert_eq!(
        restored.etag_version("restore"),
        restored.json["version"].as_i64().unwrap()
    );
    let list = app.get_after("/v1/customers", &admin.token, &token).await;
    assert!(ids(&items(&list)).contains(&id));
    let gone = app
        .get_after("/v1/customers?deleted=true", &admin.token, &token)
        .await;
    assert!(items(&gone).is_empty());
    app.json(
        Method::POST,
        &format!("/v1/customers/{}/restore", Uuid::new_v4()),
        Some(&admin.token),
        None,
    )
    .await
    .problem(404, "restore an unknown customer");

    // History: the event stream, oldest first.
    let history = app.get(&format!("{path}/history"), &admin.token).await;
    history.expect(200, "history");
    let events = items(&history);
    let final_version = restored.json["version"].as_i64().unwrap();
    assert_eq!(events.len() as i64, final_version, "{}", history.json);
    let mut previous = 0;
    let mut stamps = vec![];
    for event in &events {
        let sequence = event["sequence"].as_i64().expect("sequence");
        assert!(
            sequence > previous,
            "history is not oldest first: {}",
            history.json
        );
        previous = sequence;
        assert!(event["type"].as_str().is_some_and(|t| !t.is_empty()));
        let at = event["occurred_at"].as_str().expect("occurred_at");
        assert!(is_rfc3339_utc(at), "{at}");
        stamps.push(at.to_owned());
        assert!(event.get("changes").is_some());
    }
    let mut sorted = stamps.clone();
    sorted.sort();
    assert_eq!(stamps, sorted, "history timestamps are not oldest first");
    let authors: Vec<&str> = events
        .iter()
        .map(|e| e["user_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        authors,
        vec![
            admin.user_id.as_str(),
            user.user_id.as_str(),
            user.user_id.as_str(),
            admin.user_id.as_str()
        ],
        "history authors: {}",
        history.json
    );
    assert_eq!(events[0]["changes"]["name"], "Homer", "{}", history.json);
    // The patch records what changed (the shape of `changes` is ours to design).
    let text = events[1]["changes"].to_string();
    assert!(
        text.contains("+1 555 0199") && text.contains("email") && !text.contains("Homer"),
        "the patch event should record only the phone and the cleared email: {text}"
    );
    app.get(
        &format!("/v1/customers/{}/history", Uuid::new_v4()),
        &admin.token,
    )
    .await
    .problem(404, "history of an unknown customer");
}
both_stacks!(
    a_customer_is_patched_deleted_restored_and_has_a_history,
    customers_lifecycle_embedded,
    customers_lifecycle_full_stack
);

// ---------------------------------------------------------------------------
// Photos: both upload flows, bytes, metadata, detach, 413 and 415
// ---------------------------------------------------------------------------

async fn photos(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Photo Co").await;
    let customer = app
        .create_customer(&admin.token, json!({"name": "Pat", "surname": "Photo"}))
        .await;
    let id = customer["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/customers/{id}");

    // Option 1: upload, then attach.
    let png = png_bytes();
    let uploaded = app.upload_photo(&admin.token, png.clone(), None).await;
    uploaded.expect(201, "upload photo");
    uploaded.consistency_token("upload photo");
    let photo = uploaded.json.clone();
    let photo_id = photo["id"].as_str().expect("photo id").to_owned();
    assert_eq!(photo["content_type"], "image/png");
    assert_eq!(photo["size"], png.len());
    assert!(photo["customer_id"].is_null());
    assert!(photo["url"].as_str().is_some_and(|u| u.contains(&photo_id)));
    let sha = photo["sha256"].as_str().expect("sha256");
    assert!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()));

    let upload_token = uploaded.consistency_token("upload photo");
    let bytes = app
        .get_after(
            &format!("/v1/photos/{photo_id}"),
            &admin.token,
            &upload_token,
        )
        .await;
    bytes.expect(200, "get photo bytes");
    assert_eq!(bytes.bytes, png);
    assert!(bytes
        .header("content-type")
        .is_some_and(|c| c.starts_with("image/png")));
    let metadata = app
        .get_after(
            &format!("/v1/photos/{photo_id}/metadata"),
            &admin.token,
            &upload_token,
        )
        .await;
    metadata.expect(200, "photo metadata");
    assert_eq!(metadata.json["id"], photo_id.as_str());
    assert_eq!(metadata.json["sha256"], sha);
    metadata.etag_version("photo metadata");

    let attached = app
        .put(
            &format!("{path}/photo"),
            &admin.token,
            json!({"photo_id": photo_id}),
        )
        .await;
    attached.expect(200, "attach photo");
    let token = attached.consistency_token("attach photo");
    assert_eq!(attached.json["photo"]["id"], photo_id.as_str());
    assert_eq!(attached.json["photo"]["content_type"], "image/png");
    assert_eq!(attached.json["photo"]["size"], png.len());
    assert!(attached.json["photo"]["url"]
        .as_str()
        .is_some_and(|u| u.contains(&photo_id)));
    assert_eq!(
        attached.etag_version("attach"),
        attached.json["version"].as_i64().unwrap()
    );
    let seen = app.get_after(&path, &admin.token, &token).await;
    assert_eq!(seen.json["photo"]["id"], photo_id.as_str());
    let photo_url = seen.json["photo"]["url"].as_str().unwrap().to_owned();
    let via_url = app
        .send(app.req(Method::GET, &photo_url, Some(&admin.token)))
        .await;
    via_url.expect(200, "the customer's photo url");
    assert_eq!(via_url.bytes, png);
    app.put(
        &format!("{path}/photo"),
        &admin.token,
        json!({"photo_id": Uuid::new_v4()}),
    )
    .await
    .problem(404, "attach an unknown photo");
    app.put(
        &format!("/v1/customers/{}/photo", Uuid::new_v4()),
        &admin.token,
        json!({"photo_id": photo_id}),
    )
    .await
    .problem(404, "attach to an unknown customer");

    // Detach.
    let detached = app.delete(&format!("{path}/photo"), &admin.token).await;
    detached.expect(200, "remove photo");
    let token = detached.consistency_token("remove photo");
    assert!(detached.json["photo"].is_null(), "{}", detached.json);
    assert_eq!(
        detached.etag_version("detach"),
        detached.json["version"].as_i64().unwrap()
    );
    let seen = app.get_after(&path, &admin.token, &token).await;
    assert!(seen.json["photo"].is_null());
    app.delete(
        &format!("/v1/customers/{}/photo", Uuid::new_v4()),
        &admin.token,
    )
    .await
    .problem(404, "remove the photo of an unknown customer");

    // Option 2: upload for a customer; the projection attaches it.
    let gif = gif_bytes();
    let uploaded = app.upload_photo(&admin.token, gif.clone(), Some(&id)).await;
    uploaded.expect(201, "upload for a customer");
    let token = uploaded.consistency_token("upload for a customer");
    assert_eq!(uploaded.json["customer_id"], id.as_str());
    assert_eq!(uploaded.json["content_type"], "image/gif");
    let second_id = uploaded.json["id"].as_str().unwrap().to_owned();
    let seen = app.get_after(&path, &admin.token, &token).await;
    assert_eq!(
        seen.json["photo"]["id"],
        second_id.as_str(),
        "{}",
        seen.json
    );
    assert_eq!(seen.json["photo"]["content_type"], "image/gif");
    app.upload_photo(&admin.token, gif.clone(), Some(&Uuid::new_v4().to_string()))
        .await
        .problem(404, "upload for an unknown customer");

    // Judged by bytes, not the declared type; size capped at 5 MiB.
    let text = app
        .upload_photo(&admin.token, b"just some text, not an image".to_vec(), None)
        .await;
    text.problem(415, "upload a text file");
    let mut big = png_bytes();
    big.resize(5 * 1024 * 1024 + 1, 0);
    // Over a raw socket: the server may answer before reading it all.
    app.upload_photo_early(&admin.token, big)
        .await
        .problem(413, "upload 5 MiB + 1 byte");
    let mut max = png_bytes();
    max.resize(5 * 1024 * 1024, 0);
    app.upload_photo(&admin.token, max, None)
        .await
        .expect(201, "upload exactly 5 MiB");
    let no_file = app
        .send(
            app.req(Method::POST, "/v1/photos", Some(&admin.token))
                .multipart(reqwest::multipart::Form::new().text("customer_id", id.clone())),
        )
        .await;
    assert!(
        no_file.status == 400 || no_file.status == 422,
        "upload without a file: {}",
        no_file.status
    );
    no_file.problem(no_file.status, "upload without a file");
    app.send(
        app.req(Method::POST, "/v1/photos", Some(&admin.token))
            .header("content-type", "image/png")
            .body(png_bytes()),
    )
    .await
    .problem(415, "upload without multipart");
    app.send(app.req(
        Method::GET,
        &format!("/v1/photos/{}", Uuid::new_v4()),
        Some(&admin.token),
    ))
    .await
    .problem(404, "get an unknown photo");
}
both_stacks!(photos, photos_embedded, photos_full_stack);

// ---------------------------------------------------------------------------
// Lists: limits, cursors in every sort, search
// ---------------------------------------------------------------------------

const SURNAMES: [&str; 9] = [
    "Adams", "baker", "Clark", "Davis", "evans", "Foster", "Garcia", "Hughes", "Irwin",
];

async fn create_many(app: &TestApp, token: &str, count: usize, tag: &str) -> Vec<String> {
    use futures::StreamExt;
    let bodies: Vec<Value> = (0..count)
        .map(|i| {
            json!({"name": format!("{tag}{i}"), "surname": SURNAMES[i % SURNAMES.len()],
                   "email": format!("{tag}{i}@example.com")})
        })
        .collect();
    futures::stream::iter(bodies)
        .map(|body| async move { app.create_customer(token, body).await })
        .buffered(8)
        .collect::<Vec<Value>>()
        .await
        .into_iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Follows `next_cursor` from `first` to the end; returns every item in order.
async fn walk(app: &TestApp, token: &str, query: &str, limit: usize) -> Vec<Value> {
    let mut all = vec![];
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let path = match &cursor {
            None => format!("/v1/customers?{query}&limit={limit}"),
            Some(c) => format!("/v1/customers?{query}&limit={limit}&cursor={c}"),
        };
        let page = app.get(&path, token).await;
        page.expect(200, &format!("GET {path}"));
        let page_items = items(&page);
        assert!(page_items.len() <= limit, "page larger than limit");
        all.extend(page_items);
        match page.json["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return all,
        }
    }
    panic!("pagination of {query} never ended");
}

fn fold(text: &str) -> String {
    text.to_lowercase()
}

fn assert_ordered(items: &[Value], sort: &str) {
    for pair in items.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let ok = match sort {
            "created_at" => a["created_at"].as_str() <= b["created_at"].as_str(),
            "-created_at" => a["created_at"].as_str() >= b["created_at"].as_str(),
            "surname" => {
                let (x, y) = (
                    fold(a["surname"].as_str().unwrap()),
                    fold(b["surname"].as_str().unwrap()),
                );
                x < y || (x == y && a["id"].as_str() < b["id"].as_str())
            }
            "-surname" => {
                let (x, y) = (
                    fold(a["surname"].as_str().unwrap()),
                    fold(b["surname"].as_str().unwrap()),
                );
                x > y || (x == y && a["id"].as_str() > b["id"].as_str())
            }
            _ => unreachable!(),
        };
        assert!(ok, "sort {sort}: {a} before {b}");
    }
}

async fn lists(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Listing").await;
    let other = app.signup("Elsewhere").await;
    let created = create_many(&app, &admin.token, 205, "p").await;
    let total = created.len();
    let created_set: HashSet<String> = created.iter().cloned().collect();
    assert_eq!(created_set.len(), total);

    // Limits.
    let default = app.get("/v1/customers", &admin.token).await;
    default.expect(200, "default list");
    assert_eq!(items(&default).len(), 50, "default limit is 50");
    assert!(default.json["next_cursor"].is_string());
    let clamped = app.get("/v1/customers?limit=500", &admin.token).await;
    clamped.expect(200, "limit=500");
    assert_eq!(items(&clamped).len(), 200, "limit=500 is clamped to 200");
    assert!(clamped.json["next_cursor"].is_string());
    let exact = app.get("/v1/customers?limit=200", &admin.token).await;
    assert_eq!(ids(&items(&exact)), ids(&items(&clamped)));
    for bad in [
        "limit=0",
        "limit=-1",
        "limit=abc",
        "sort=name",
        "deleted=maybe",
    ] {
        app.get(&format!("/v1/customers?{bad}"), &admin.token)
            .await
            .problem(400, bad);
    }
    app.get("/v1/users?limit=0", &admin.token)
        .await
        .problem(400, "users limit=0");

    // Every sort: small pages give every item exactly once, in order, the
    // same order as big pages.
    for sort in ["created_at", "-created_at", "surname", "-surname"] {
        let small = walk(&app, &admin.token, &format!("sort={sort}"), 7).await;
        let small_ids = ids(&small);
        let unique: HashSet<String> = small_ids.iter().cloned().collect();
        assert_eq!(
            small_ids.len(),
            total,
            "sort {sort}: {} items, expected {total}",
            small_ids.len()
        );
        assert_eq!(
            unique, created_set,
            "sort {sort}: items missing or repeated"
        );
        assert_ordered(&small, sort);
        let big = walk(&app, &admin.token, &format!("sort={sort}"), 200).await;
        assert_eq!(
            ids(&big),
            small_ids,
            "sort {sort}: page size changes the order"
        );
    }
    let default_order = ids(&walk(&app, &admin.token, "x=1", 60).await);
    let newest_first = ids(&walk(&app, &admin.token, "sort=-created_at", 60).await);
    assert_eq!(
        default_order, newest_first,
        "the default sort is -created_at"
    );

    // Cursors are stable under concurrent inserts.
    for sort in ["created_at", "-created_at", "surname"] {
        let first = app
            .get(&format!("/v1/customers?sort={sort}&limit=20"), &admin.token)
            .await;
        let mut seen = ids(&items(&first));
        let mut cursor = first.json["next_cursor"].as_str().map(str::to_owned);
        let mut inserted = false;
        while let Some(c) = cursor {
            if !inserted {
                create_many(
                    &app,
                    &admin.token,
                    3,
                    &format!("ins{}", sort.replace('-', "d")),
                )
                .await;
                inserted = true;
            }
            let page = app
                .get(
                    &format!("/v1/customers?sort={sort}&limit=20&cursor={c}"),
                    &admin.token,
                )
                .await;
            page.expect(200, "page during inserts");
            seen.extend(ids(&items(&page)));
            cursor = page.json["next_cursor"].as_str().map(str::to_owned);
        }
        let originals: Vec<&String> = seen.iter().filter(|i| created_set.contains(*i)).collect();
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "sort {sort}: an item repeated during inserts"
        );
        assert_eq!(
            originals.len(),
            total,
            "sort {sort}: an item was skipped during inserts"
        );
    }

    // Foreign, tampered and mismatched cursors are 400.
    let page = app.get("/v1/customers?limit=5", &admin.token).await;
    let cursor = page.json["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    app.get(
        &format!("/v1/customers?limit=5&cursor={cursor}"),
        &admin.token,
    )
    .await
    .expect(200, "the cursor itself works");
    let mut tampered = cursor.clone().into_bytes();
    let middle = tampered.len() / 3;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    app.get(
        &format!("/v1/customers?limit=5&cursor={tampered}"),
        &admin.token,
    )
    .await
    .problem(400, "a tampered cursor");
    app.get("/v1/customers?cursor=not-a-cursor", &admin.token)
        .await
        .problem(400, "a garbage cursor");
    let foreign = app
        .get(
            &format!("/v1/customers?limit=5&cursor={cursor}"),
            &other.token,
        )
        .await;
    foreign.problem(400, "company A's cursor used by company B");
    app.get(
        &format!("/v1/customers?limit=5&sort=surname&cursor={cursor}"),
        &admin.token,
    )
    .await
    .problem(400, "a cursor of another sort");
    app.get(&format!("/v1/users?cursor={cursor}"), &admin.token)
        .await
        .problem(400, "a customers cursor on users");
}
both_stacks!(lists, lists_embedded, lists_full_stack);

async fn search(stack: Stack) {
    let app = spawn_app(stack).await;
    let admin = app.signup("Searchers").await;
    let other = app.signup("Outsiders").await;
    let alvarez = app
        .create_customer(
            &admin.token,
            json!({"name": "María", "surname": "Álvarez", "email": "maria.alvarez@acme.test"}),
        )
        .await;
    let jose = app
        .create_customer(
            &admin.token,
            json!({"name": "José Luis", "surname": "Núñez", "email": "jl@zeta.test"}),
        )
        .await;
    let smith = app
        .create_customer(
            &admin.token,
            json!({"name": "John", "surname": "Smith", "email": "quintessential@corp.test"}),
        )
        .await;
    let mut last = app
        .post(
            "/v1/customers",
            &admin.token,
            json!({"name": "Deleted", "surname": "Alvarado"}),
        )
        .await;
    last.expect(201, "create");
    let deleted_id = last.json["id"].as_str().unwrap().to_owned();
    last = app
        .delete(&format!("/v1/customers/{deleted_id}"), &admin.token)
        .await;
    last.expect(204, "delete");
    // Another company's customer with the same words never shows.
    app.create_customer(
        &other.token,
        json!({"name": "Álvaro", "surname": "Álvarez"}),
    )
    .await;
    let token = last.consistency_token("delete");
    let (a, j, s) = (
        alvarez["id"].as_str().unwrap(),
        jose["id"].as_str().unwrap(),
        smith["id"].as_str().unwrap(),
    );
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("alv", vec![a]),
        ("ALV", vec![a]),
        ("álv", vec![a]),
        ("Álvarez", vec![a]),
        ("alvarez", vec![a]),
        ("varez", vec![]),
        ("JOSE", vec![j]),
        ("jose", vec![j]),
        ("luis", vec![j]),
        ("nunez", vec![j]),
        ("NÚÑ", vec![j]),
        ("maria", vec![a]),
        ("maria.alv", vec![a]),
        ("maria.alvarez@acme", vec![a]),
        ("quint", vec![s]),
        ("quintessential@corp.test", vec![s]),
        ("essential", vec![]),
        ("jose alv", vec![]),
        ("maria alv", vec![a]),
        ("zzz", vec![]),
    ];
    for (q, expected) in cases {
        let encoded: String = q
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let found = app
            .get_after(&format!("/v1/customers?q={encoded}"), &admin.token, &token)
            .await;
        found.expect(200, &format!("q={q}"));
        let mut got = ids(&items(&found));
        got.sort();
        let mut want: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        assert_eq!(got, want, "q={q}: {}", found.json);
    }
    // Search within deleted ones.
    let found = app
        .get_after("/v1/customers?q=alva&deleted=true", &admin.token, &token)
        .await;
    assert_eq!(ids(&items(&found)), vec![deleted_id]);
    // Search results paginate too.
    let first = app
        .get("/v1/customers?q=test&limit=1&sort=surname", &admin.token)
        .await;
    first.expect(200, "search page 1");
    assert_eq!(items(&first).len(), 1);
    let cursor = first.json["next_cursor"].as_str().expect("search cursor");
    let second = app
        .get(
            &format!("/v1/customers?q=test&limit=1&sort=surname&cursor={cursor}"),
            &admin.token,
        )
        .await;
    second.expect(200, "search page 2");
    assert_eq!(items(&second).len(), 1);
    assert_ne!(ids(&items(&second)), ids(&items(&first)));
    app.get(
        &format!("/v1/customers?q=john&limit=1&sort=surname&cursor={cursor}"),
        &admin.token,
    )
    .await
    .problem(400, "a cursor of another search");
}
both_stacks!(search, search_embedded, search_full_stack);

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

async fn operations(stack: Stack) {
    // The metrics recorder is the process's own: a real process.
    let app = spawn_process(stack, &[]).await;
    let health = app.send(app.req(Method::GET, "/healthz", None)).await;
    health.expect(200, "healthz");
    let ready = app.send(app.req(Method::GET, "/readyz", None)).await;
    ready.expect(200, "readyz");
    let admin = app.signup("Ops").await;
    app.create_customer(&admin.token, json!({"name": "M", "surname": "Etrics"}))
        .await;
    let metrics = app.send(app.req(Method::GET, "/metrics", None)).await;
    metrics.expect(200, "metrics");
    assert!(metrics
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain")));
    let text = metrics.text();
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(
        text.contains("/v1/customers"),
        "metrics have no route label"
    );
}
both_stacks!(operations, operations_embedded, operations_full_stack);

/// Found by the fault drills (1c, 2, 3): while the views lagged behind the
/// writes (NATS, the relay or the workers down), a create answered `404`
/// after waiting for its view, though it was committed (customers, users,
/// signup), and an update answered with the state before it. They now
/// answer from the write's own events (user writes, which wait for the
/// users view because the next request's authentication reads it, flag
/// `X-Consistency-Stale` when they gave up), equal to what the views show
/// once they have caught up.
#[tokio::test]
async fn write_replies_while_the_views_lag_full_stack() {
    use sqlx::Connection;
    let mut app = spawn_app(Stack::Full).await;
    let admin = app.signup("Laggards").await;
    let existing = app
        .create_customer(&admin.token, json!({"name": "Old", "surname": "Row"}))
        .await;
    let existing_path = format!("/v1/customers/{}", existing["id"].as_str().expect("id"));
    // The replies themselves are checked, not their visibility.
    app.settle_writes = false;
    // Hold the views still: their writers wait (and time out), reads pass.
    let url = app.database_url.clone().expect("full stack database");
    let mut lock = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut lock)
        .await
        .expect("begin");
    sqlx::query("LOCK TABLE customers, users, companies IN EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .expect("lock the views");

    let email = format!("lagging-{}@example.com", Uuid::new_v4().simple());
    let (created, patched, user, company, signup) =
        tokio::join!(
        app.post(
            "/v1/customers",
            &admin.token,
            json!({"name": "New", "surname": "Lag", "email": "lag@example.com"}),
        ),
        app.patch(&existing_path, &admin.token, json!({"notes": "after"})),
        app.post(
            "/v1/users",
            &admin.token,
            json!({"email": email, "name": "Late", "password": "a long password", "role": "user"}),
        ),
        app.patch("/v1/company", &admin.token, json!({"name": "Renamed Laggards"})),
        app.json(
            Method::POST,
            "/v1/signup",
            None,
            Some(json!({"company_name": "Newcomers", "name": "Nia",
                "email": format!("nia-{email}"), "password": "correct horse battery"})),
        ),
    );
    created.expect(201, "a customer created while the views lag");
    // Customer writes never wait for the views, so their replies are never stale.
    assert_eq!(created.header("x-consistency-stale"), None);
    assert_eq!(created.etag_version("create"), 1);
    assert_eq!(created.json["surname"], "Lag");
    assert_eq!(created.json["email"], "lag@example.com");
    assert_eq!(created.json["created_by"], admin.user_id.as_str());
    assert_eq!(created.json["version"], 1);
    patched.expect(200, "a customer updated while the views lag");
    assert_eq!(patched.etag_version("update"), 2);
    assert_eq!(
        patched.json["notes"], "after",
        "not the state before the write"
    );
    assert_eq!(patched.json["version"], 2);
    user.expect(201, "a user created while the views lag");
    assert_eq!(user.json["email"], email.as_str());
    assert_eq!(user.json["role"], "user");
    company.expect(200, "the company renamed while the views lag");
    assert_eq!(company.json["name"], "Renamed Laggards");
    signup.expect(201, "a signup while the views lag");
    assert_eq!(signup.json["company"]["name"], "Newcomers");
    assert_eq!(signup.json["user"]["role"], "admin");

    sqlx::query("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("unlock");
    for reply in [&created, &patched] {
        let path = format!("/v1/customers/{}", reply.json["id"].as_str().expect("id"));
        let token = reply.consistency_token("write");
        let now = app.get_after(&path, &admin.token, &token).await;
        now.expect(200, "read after the views caught up");
        assert_eq!(now.json, reply.json, "the reply equals the caught-up view");
    }
    let path = format!("/v1/users/{}", user.json["id"].as_str().expect("id"));
    let now = app
        .get_after(&path, &admin.token, &user.consistency_token("user"))
        .await;
    assert_eq!(
        now.json, user.json,
        "the user reply equals the caught-up view"
    );
    let now = app
        .get_after(
            "/v1/company",
            &admin.token,
            &company.consistency_token("company"),
        )
        .await;
    assert_eq!(now.json, company.json);
    let newcomer = signup.json["access_token"].as_str().expect("access token");
    // The token is checked against the users view, before the read waits.
    let mut me = app.get("/v1/me", newcomer).await;
    for _ in 0..100 {
        if me.status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        me = app.get("/v1/me", newcomer).await;
    }
    me.expect(200, "the signup's token works once the views caught up");
    assert_eq!(me.json, signup.json["user"]);
}

/// Fault drill 10: a session idle in a transaction that locks the event
/// store. Writers wait at most the session's `lock_timeout` and answer `503`
/// saying it was a lock timeout, with `Retry-After`; reads are served.
#[tokio::test]
async fn a_locked_event_store_answers_503_that_says_timeout_full_stack() {
    use sqlx::Connection;
    let app = spawn_app(Stack::Full).await;
    let admin = app.signup("Locked").await;
    let url = app.database_url.clone().expect("full stack database");
    let mut idle = sqlx::PgConnection::connect(&url).await.expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut idle)
        .await
        .expect("begin");
    sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
        .execute(&mut idle)
        .await
        .expect("lock the event store");

    let blocked = app
        .post(
            "/v1/customers",
            &admin.token,
            json!({"name": "Blocked", "surname": "Writer"}),
        )
        .await;
    blocked.problem(503, "a write behind a lock");
    assert!(
        blocked.header("retry-after").is_some(),
        "503 without Retry-After"
    );
    let detail = blocked.json["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("timed out waiting for a lock"),
        "detail: {detail}"
    );
    app.get("/v1/customers", &admin.token)
        .await
        .expect(200, "reads while the event store is locked");

    sqlx::query("ROLLBACK")
        .execute(&mut idle)
        .await
        .expect("unlock");
    app.post(
        "/v1/customers",
        &admin.token,
        json!({"name": "Free", "surname": "Writer"}),
    )
    .await
    .expect(201, "writes once the lock is gone");
}

//! Session revocation across API processes (drill 6): a user's token is
//! revoked through API process A (role change, password change, removal) and
//! must be refused by API process B on its very next request. Every request
//! re-checks the token against the users view, and the revoking write's
//! reply waits for that view, so "at once" means no retry and no sleep.
use reqwest::{Client, RequestBuilder};
use serde_json::{json, Value};
use std::time::Duration;

use crate::load::Target;

const PASSWORD: &str = "revocation drill password";

async fn send(request: RequestBuilder) -> Result<(u16, bool, Value), String> {
    let response = request
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let stale = response.headers().contains_key("x-consistency-stale");
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, stale, body))
}

/// `GET /v1/me` on `base` with `token`: its status.
async fn me(http: &Client, base: &str, token: &str) -> Result<u16, String> {
    send(http.get(format!("{base}/v1/me")).bearer_auth(token))
        .await
        .map(|(status, _, _)| status)
}

/// One revocation: a fresh user logged in on B, revoked on A by `how`,
/// refused by B next. Returns the revoking reply's staleness.
async fn one(http: &Client, a: &str, b: &str, admin: &str, how: &str) -> Result<bool, String> {
    let key = format!("revoke-{how}-{}", uuid::Uuid::new_v4().simple());
    let email = format!("{key}@revocation.drill.example");
    let (status, _, body) = send(
        http.post(format!("{a}/v1/users"))
            .bearer_auth(admin)
            .header("idempotency-key", &key)
            .json(&json!({
                "email": email, "name": "Revoked", "surname": how,
                "password": PASSWORD, "role": "user",
            })),
    )
    .await?;
    if status != 201 {
        return Err(format!("{how}: creating the user on A: {status} {body}"));
    }
    let id = body["id"].as_str().unwrap_or_default().to_owned();
    let (status, _, body) = send(
        http.post(format!("{b}/v1/auth/token"))
            .json(&json!({"email": email, "password": PASSWORD})),
    )
    .await?;
    let token = body["access_token"].as_str().unwrap_or_default().to_owned();
    if status != 200 || token.is_empty() {
        return Err(format!("{how}: logging in on B: {status} {body}"));
    }
    // Accepted before: otherwise the 401 below would prove nothing.
    let before = me(http, b, &token).await?;
    if before != 200 {
        return Err(format!("{how}: B refused the fresh token ({before})"));
    }
    let users = format!("{a}/v1/users/{id}");
    let revoke = match how {
        "role" => http
            .put(format!("{users}/role"))
            .json(&json!({"role": "admin"})),
        "password" => http
            .patch(&users)
            .json(&json!({"password": "another revocation password"})),
        _ => http.delete(&users),
    };
    let (status, stale, body) = send(revoke.bearer_auth(admin)).await?;
    if !(200..300).contains(&status) {
        return Err(format!("{how}: revoking on A: {status} {body}"));
    }
    let after = me(http, b, &token).await?;
    if after != 401 {
        return Err(format!(
            "{how}: B answered {after} to the revoked token right after A's {status}{}",
            if stale { " (flagged stale)" } else { "" }
        ));
    }
    Ok(stale)
}

/// Role change, password change and removal, each on its own user; a note
/// for the report, or what went wrong.
pub async fn check(a: &str, b: &str, target: &Target) -> Result<String, String> {
    let http = Client::new();
    let mut stale = 0;
    for how in ["role", "password", "delete"] {
        if one(&http, a, b, &target.token, how).await? {
            stale += 1;
        }
    }
    Ok(format!(
        "sessions revoked on api-1 (role change, password change, removal) were refused (401) by api-2 on its next request{}",
        if stale > 0 {
            format!("; {stale} revoking replies were flagged stale")
        } else {
            String::new()
        }
    ))
}

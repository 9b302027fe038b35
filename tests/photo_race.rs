//! Two customers racing for one photo (`PUT /v1/customers/{id}/photo` at the
//! same moment): one wins, the other is refused with `409`, and the refused
//! customer never shows the photo, not even for a moment in its event log.
//! Black-box, the real `crm` binary over HTTP, on both stacks.
mod common;

use common::{png_bytes, Stack, TestApp};
use serde_json::{json, Value};

const ROUNDS: usize = 12;

async fn race_for_one_photo(stack: Stack) {
    let app = common::spawn_app(stack).await;
    let tenant = app.signup("Race Co").await;
    let token = tenant.token.as_str();
    for round in 0..ROUNDS {
        let a = id_of(
            &app.create_customer(token, json!({"name": "Ada", "surname": "A"}))
                .await,
        );
        let b = id_of(
            &app.create_customer(token, json!({"name": "Bob", "surname": "B"}))
                .await,
        );
        let upload = app.upload_photo(token, unique_png(round), None).await;
        upload.expect(201, "upload");
        let photo = id_of(&upload.json);
        let body = json!({ "photo_id": photo });
        let (path_a, path_b) = (
            format!("/v1/customers/{a}/photo"),
            format!("/v1/customers/{b}/photo"),
        );
        let (first, second) = tokio::join!(
            app.put(&path_a, token, body.clone()),
            app.put(&path_b, token, body.clone()),
        );
        let mut statuses = [first.status, second.status];
        statuses.sort();
        assert_eq!(
            statuses,
            [200, 409],
            "round {round}: one attach wins, one is refused"
        );
        let (winner, loser) = if first.status == 200 {
            (&a, &b)
        } else {
            (&b, &a)
        };
        // A write's reply is folded from the customer's own events: what the
        // log holds right after the race.
        let shown = |customer: Value| customer["photo"]["id"].as_str().map(str::to_owned);
        let touch = json!({ "notes": format!("after round {round}") });
        let loser_now = app
            .patch(&format!("/v1/customers/{loser}"), token, touch.clone())
            .await;
        loser_now.expect(200, "touch the refused customer");
        assert_eq!(
            shown(loser_now.json),
            None,
            "round {round}: the refused customer shows no photo"
        );
        let winner_now = app
            .patch(&format!("/v1/customers/{winner}"), token, touch)
            .await;
        winner_now.expect(200, "touch the winner");
        assert_eq!(
            shown(winner_now.json),
            Some(photo.clone()),
            "round {round}: the winner shows it"
        );
        assert_no_attach_in_history(&app, token, loser, &photo, round).await;
    }
}

async fn assert_no_attach_in_history(
    app: &TestApp,
    token: &str,
    customer: &str,
    photo: &str,
    round: usize,
) {
    let history = app
        .get(&format!("/v1/customers/{customer}/history"), token)
        .await;
    history.expect(200, "history");
    let text = history.json.to_string();
    assert!(
        !text.contains(photo),
        "round {round}: the refused customer's history names the photo: {text}"
    );
}

fn id_of(value: &Value) -> String {
    value["id"].as_str().expect("an id").to_owned()
}

/// A PNG of its own per round (photos are unique by content hash).
fn unique_png(round: usize) -> Vec<u8> {
    let mut bytes = png_bytes();
    bytes.extend_from_slice(format!("round {round} {}", uuid::Uuid::new_v4()).as_bytes());
    bytes
}

both_stacks!(
    race_for_one_photo,
    race_for_one_photo_embedded,
    race_for_one_photo_full
);

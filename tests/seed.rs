//! `crm seed` on both stacks: the events it appends in bulk are the ones
//! commands would write (the seeded admins sign in, their customers list and
//! search), the views it rebuilds are whole, and the feed goes on after the
//! seeded events instead of delivering them again.
mod common;

use common::*;

const COMPANIES: &str = "2";
const CUSTOMERS: usize = 25;

/// The lag `crm projections status` prints for the store's default feed.
fn default_feed_lag(app: &TestApp) -> String {
    let status = app.run_crm(&["projections", "status"]);
    assert!(status.status.success(), "projections status failed");
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    let feed = match app.stack {
        Stack::Full => "relay (main)",
        Stack::Embedded => "projections (embedded)",
    };
    let line = text
        .lines()
        .find(|line| line.starts_with(feed))
        .unwrap_or_else(|| panic!("no {feed} in the status:\n{text}"));
    let lag = line.split("lag").nth(1).unwrap_or_default();
    lag.split_whitespace().next().unwrap_or_default().to_owned()
}

async fn seeded_store_serves(stack: Stack) {
    let mut app = spawn_process(stack, &[]).await;
    app.kill();
    let per_company = CUSTOMERS.to_string();
    let seed = [
        "seed",
        "--companies",
        COMPANIES,
        "--customers-per-company",
        &per_company,
    ];
    let seeded = app.run_crm(&seed);
    assert!(
        seeded.status.success(),
        "seed: {}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    assert_eq!(
        default_feed_lag(&app),
        "0",
        "the feed moved past the seeded events"
    );
    let again = app.run_crm(&seed);
    assert!(
        !again.status.success(),
        "a second seed of one store is refused"
    );

    app.start_again().await;
    let token = app
        .login("admin1@seed.example.com", "seed-password-1")
        .await;
    let list = app.get("/v1/customers?limit=100", &token).await;
    list.expect(200, "the seeded company's customers");
    let items = list.json["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), CUSTOMERS, "every seeded customer, once");
    let other = app
        .login("admin0@seed.example.com", "seed-password-1")
        .await;
    let theirs = app.get("/v1/customers?limit=100", &other).await;
    let theirs = theirs.json["items"].as_array().expect("items").clone();
    assert!(
        items.iter().all(|c| !theirs.contains(c)),
        "no customer in both companies"
    );
    let email = items[0]["email"].as_str().expect("a seeded email");
    let found = app
        .get(&format!("/v1/customers?limit=100&q={email}"), &token)
        .await;
    found.expect(200, "search");
    assert!(
        found.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|c| c["id"] == items[0]["id"]),
        "the bulk-loaded search words find the customer"
    );

    // The feed goes on from the seed: a new write reaches the view.
    let created = app
        .post(
            "/v1/customers",
            &token,
            serde_json::json!({"name": "After", "surname": "Seed"}),
        )
        .await;
    created.expect(201, "a create after the seed");
    let consistency = created.consistency_token("the create");
    let listed = app
        .get_after("/v1/customers?limit=100&q=after", &token, &consistency)
        .await;
    listed.expect(200, "the list after a write");
    assert!(
        listed.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|c| c["id"] == created.json["id"]),
        "the write after the seed is in the view"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_store_serves_embedded() {
    seeded_store_serves(Stack::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_store_serves_full_stack() {
    seeded_store_serves(Stack::Full).await;
}

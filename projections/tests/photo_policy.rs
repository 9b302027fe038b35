//! The photo attach policy (upload flow option 2) driven directly: real
//! commands on a fresh SQLite event store, the stored `PhotoUploaded` event
//! handed to the policy as a feed would, including redeliveries.
use commands::events::{read_stream, StoredEvent};
use commands::{CommandContext, Commands, Db, Expect};
use domain::customer::{Customer, CustomerCommand, CustomerDetails};
use domain::photo::{Photo, PhotoCommand, StoredImage};
use domain::values::{ImageType, ObjectKey, PersonName, Sha256Hex};
use domain::{CompanyId, CustomerId, PhotoId, UserId};
use projections::feed::{Handled, Handler};
use projections::policy::PhotoAttachPolicy;
use uuid::Uuid;

struct Env {
    commands: Commands,
    policy: PhotoAttachPolicy,
    dir: std::path::PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn env() -> Env {
    let dir = std::env::temp_dir().join(format!("crm-policy-test-{}", Uuid::new_v4().simple()));
    let db = Db::connect_sqlite(&dir).await.expect("open SQLite");
    db.migrate().await.expect("migrate");
    let commands = Commands::new(db);
    Env {
        policy: PhotoAttachPolicy::new(commands.clone()),
        commands,
        dir,
    }
}

struct Tenant {
    ctx: CommandContext,
}

fn tenant() -> Tenant {
    Tenant {
        ctx: CommandContext::new(
            CompanyId(Uuid::now_v7()),
            UserId(Uuid::now_v7()),
            Uuid::now_v7(),
        ),
    }
}

impl Tenant {
    fn company(&self) -> CompanyId {
        self.ctx.company_id
    }

    fn user(&self) -> UserId {
        self.ctx.user_id
    }
}

async fn register(env: &Env, tenant: &Tenant) -> CustomerId {
    let id = CustomerId(Uuid::now_v7());
    let command = CustomerCommand::Register {
        customer_id: id,
        company_id: tenant.company(),
        details: CustomerDetails {
            name: PersonName::parse("Grace").expect("name"),
            surname: PersonName::parse("Hopper").expect("surname"),
            email: None,
            phone: None,
            notes: None,
            external_id: None,
        },
        photo: None,
        by: tenant.user(),
    };
    env.commands
        .execute::<Customer>(&id.to_string(), command, &tenant.ctx, Expect::Any)
        .await
        .expect("register customer");
    id
}

async fn delete(env: &Env, tenant: &Tenant, customer: CustomerId) {
    env.commands
        .execute::<Customer>(
            &customer.to_string(),
            CustomerCommand::Delete { by: tenant.user() },
            &tenant.ctx,
            Expect::Any,
        )
        .await
        .expect("delete customer");
}

/// Records `PhotoUploaded` (for `customer`) and returns the stored event.
async fn upload(
    env: &Env,
    tenant: &Tenant,
    customer: Option<CustomerId>,
) -> (PhotoId, StoredEvent) {
    let photo = PhotoId(Uuid::now_v7());
    let image = StoredImage {
        object_key: ObjectKey::for_photo(tenant.company(), photo),
        content_type: ImageType::Png,
        size: 1234,
        sha256: Sha256Hex::parse(&"ab".repeat(32)).expect("sha256"),
    };
    let command = PhotoCommand::Upload {
        photo_id: photo,
        company_id: tenant.company(),
        image,
        for_customer: customer,
        by: tenant.user(),
    };
    env.commands
        .execute::<Photo>(&photo.to_string(), command, &tenant.ctx, Expect::Any)
        .await
        .expect("upload photo");
    let events = stream(env, "photo", &photo.to_string()).await;
    assert_eq!(events.len(), 1, "one event after upload");
    let event = events.into_iter().next().expect("PhotoUploaded");
    assert_eq!(event.event_type, "PhotoUploaded");
    (photo, event)
}

async fn stream(env: &Env, aggregate_type: &str, id: &str) -> Vec<StoredEvent> {
    read_stream(env.commands.db(), aggregate_type, id)
        .await
        .expect("read stream")
}

async fn types(env: &Env, aggregate_type: &str, id: &str) -> Vec<String> {
    stream(env, aggregate_type, id)
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

fn count(types: &[String], event_type: &str) -> usize {
    types.iter().filter(|t| *t == event_type).count()
}

async fn photo_state(env: &Env, tenant: &Tenant, photo: PhotoId) -> Photo {
    env.commands
        .load::<Photo>(&photo.to_string(), tenant.company())
        .await
        .expect("load photo")
        .expect("the photo exists")
        .0
}

async fn customer_state(env: &Env, tenant: &Tenant, customer: CustomerId) -> Customer {
    env.commands
        .load::<Customer>(&customer.to_string(), tenant.company())
        .await
        .expect("load customer")
        .expect("the customer exists")
        .0
}

#[tokio::test]
async fn customer_deleted_before_the_policy_runs_rejects_the_photo() {
    let env = env().await;
    let tenant = tenant();
    let customer = register(&env, &tenant).await;
    let (photo, uploaded) = upload(&env, &tenant, Some(customer)).await;
    delete(&env, &tenant, customer).await;

    assert_eq!(env.policy.handle(&uploaded).await, Handled::Done);
    let state = photo_state(&env, &tenant, photo).await;
    let reason = state.rejected.clone().expect("the photo is rejected");
    assert!(reason.contains("deleted"), "the reason says why: {reason}");
    assert_eq!(state.attached_to, None);
    let photo_events = types(&env, "photo", &photo.to_string()).await;
    assert_eq!(photo_events, ["PhotoUploaded", "PhotoRejected"]);
    let rejected = stream(&env, "photo", &photo.to_string()).await;
    assert_eq!(
        rejected[1].payload["PhotoRejected"]["reason"], reason,
        "the stored event carries the reason"
    );
    assert_eq!(
        rejected[1].meta("company_id"),
        Some(tenant.company().to_string().as_str()),
        "the policy acts as the uploader's company"
    );
    let customer_events = types(&env, "customer", &customer.to_string()).await;
    assert_eq!(count(&customer_events, "CustomerPhotoAttached"), 0);
    assert_eq!(customer_state(&env, &tenant, customer).await.photo, None);

    // A redelivery changes nothing.
    assert_eq!(env.policy.handle(&uploaded).await, Handled::Done);
    assert_eq!(types(&env, "photo", &photo.to_string()).await, photo_events);
    assert_eq!(
        types(&env, "customer", &customer.to_string()).await,
        customer_events
    );
}

#[tokio::test]
async fn customer_that_never_existed_rejects_the_photo() {
    let env = env().await;
    let tenant = tenant();
    let missing = CustomerId(Uuid::now_v7());
    let (photo, uploaded) = upload(&env, &tenant, Some(missing)).await;

    assert_eq!(env.policy.handle(&uploaded).await, Handled::Done);
    let state = photo_state(&env, &tenant, photo).await;
    assert!(state.rejected.is_some(), "rejected: {state:?}");
    assert!(
        stream(&env, "customer", &missing.to_string())
            .await
            .is_empty(),
        "no customer stream is created"
    );
}

#[tokio::test]
async fn another_companys_customer_is_never_attached() {
    let env = env().await;
    let a = tenant();
    let b = tenant();
    let b_customer = register(&env, &b).await;
    // An event of company A naming company B's customer (the API refuses
    // this at upload; the policy must not trust the event either).
    let (photo, uploaded) = upload(&env, &a, Some(b_customer)).await;

    assert_eq!(env.policy.handle(&uploaded).await, Handled::Done);
    let b_events = types(&env, "customer", &b_customer.to_string()).await;
    assert_eq!(b_events, ["CustomerRegistered"]);
    assert_eq!(customer_state(&env, &b, b_customer).await.photo, None);
    let state = photo_state(&env, &a, photo).await;
    assert_eq!(state.attached_to, None);
    assert!(state.rejected.is_some(), "rejected: {state:?}");
}

#[tokio::test]
async fn redelivered_upload_attaches_exactly_once() {
    let env = env().await;
    let tenant = tenant();
    let customer = register(&env, &tenant).await;
    let (photo, uploaded) = upload(&env, &tenant, Some(customer)).await;

    assert_eq!(env.policy.handle(&uploaded).await, Handled::Done);
    assert_eq!(env.policy.handle(&uploaded).await, Handled::Done);

    let customer_events = types(&env, "customer", &customer.to_string()).await;
    assert_eq!(
        customer_events,
        ["CustomerRegistered", "CustomerPhotoAttached"],
        "one attachment for two deliveries"
    );
    let photo_events = types(&env, "photo", &photo.to_string()).await;
    assert_eq!(photo_events, ["PhotoUploaded", "PhotoAttached"]);
    // The photo records the customer version that shows it.
    let attached = &stream(&env, "photo", &photo.to_string()).await[1];
    assert_eq!(
        attached.payload["PhotoAttached"]["customer_version"], 2,
        "{attached:?}"
    );
    assert_eq!(
        customer_state(&env, &tenant, customer).await.photo,
        Some(photo)
    );
    let state = photo_state(&env, &tenant, photo).await;
    assert_eq!(state.attached_to, Some(customer));
    assert_eq!(state.rejected, None);
}

#[tokio::test]
async fn redelivery_after_a_newer_photo_changes_nothing() {
    let env = env().await;
    let tenant = tenant();
    let customer = register(&env, &tenant).await;
    let (first, first_uploaded) = upload(&env, &tenant, Some(customer)).await;
    assert_eq!(env.policy.handle(&first_uploaded).await, Handled::Done);
    let (second, second_uploaded) = upload(&env, &tenant, Some(customer)).await;
    assert_eq!(env.policy.handle(&second_uploaded).await, Handled::Done);

    // The newer photo replaced the first, which is detached.
    assert_eq!(
        customer_state(&env, &tenant, customer).await.photo,
        Some(second)
    );
    assert_eq!(photo_state(&env, &tenant, first).await.attached_to, None);
    assert_eq!(
        types(&env, "photo", &first.to_string()).await,
        ["PhotoUploaded", "PhotoAttached", "PhotoDetached"]
    );
    let customer_events = types(&env, "customer", &customer.to_string()).await;
    let first_events = types(&env, "photo", &first.to_string()).await;
    let second_events = types(&env, "photo", &second.to_string()).await;

    // The first upload's event arrives again (a late redelivery): the
    // customer keeps the newer photo and no event is written.
    assert_eq!(env.policy.handle(&first_uploaded).await, Handled::Done);
    assert_eq!(
        customer_state(&env, &tenant, customer).await.photo,
        Some(second),
        "a redelivered old upload must not bring the old photo back"
    );
    assert_eq!(
        types(&env, "customer", &customer.to_string()).await,
        customer_events
    );
    assert_eq!(types(&env, "photo", &first.to_string()).await, first_events);
    assert_eq!(
        types(&env, "photo", &second.to_string()).await,
        second_events
    );
}

#[tokio::test]
async fn events_other_than_option_two_uploads_are_ignored() {
    let env = env().await;
    let tenant = tenant();
    let customer = register(&env, &tenant).await;
    // Option 1: no target customer, nothing to do.
    let (photo, uploaded) = upload(&env, &tenant, None).await;
    assert_eq!(env.policy.handle(&uploaded).await, Handled::Done);
    assert_eq!(
        types(&env, "photo", &photo.to_string()).await,
        ["PhotoUploaded"]
    );
    // Other photo events are not uploads.
    env.commands
        .execute::<Photo>(
            &photo.to_string(),
            PhotoCommand::Reject {
                reason: "test".into(),
            },
            &tenant.ctx,
            Expect::Any,
        )
        .await
        .expect("reject");
    let rejected = stream(&env, "photo", &photo.to_string()).await[1].clone();
    assert_eq!(env.policy.handle(&rejected).await, Handled::Done);
    assert_eq!(
        types(&env, "customer", &customer.to_string()).await,
        ["CustomerRegistered"]
    );
    assert_eq!(env.policy.aggregate_type(), "photo");
}

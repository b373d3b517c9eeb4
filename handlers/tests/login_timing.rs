//! An unknown username costs a real argon2 verification, like a wrong password, so response time
//! does not tell which usernames exist. (Its own test binary: the counter is process-wide.)

mod support;

use std::sync::atomic::Ordering;

use notes_handlers::domain::password::VERIFICATIONS;
use serde_json::json;
use support::App;

#[tokio::test]
async fn unknown_users_cost_a_verification() {
    let app = App::new();
    app.signup_and_login("ada").await;
    let before = VERIFICATIONS.load(Ordering::SeqCst);
    let r = app
        .post_anonymous(
            "/auth/login",
            json!({"username": "nobody", "password": "x"}),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        VERIFICATIONS.load(Ordering::SeqCst) - before,
        1,
        "the unknown user was verified against the dummy hash"
    );
    let r = app
        .post_anonymous(
            "/auth/login",
            json!({"username": "ada", "password": "wrong"}),
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(VERIFICATIONS.load(Ordering::SeqCst) - before, 2);
}

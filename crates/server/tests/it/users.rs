//! Users, sessions and their errors, driven through the public HTTP API.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use warmspace_sdk::{
    Client, CreateFirstUserRequest, CreateUserRequest, LoginType, LoginWithPasswordRequest, Role, UserStatus,
    UsersQuery,
};
use warmspace_server::testing::{OWNER_EMAIL, PASSWORD, TestServer};

use crate::common::api_status;

fn fields(response: &warmspace_sdk::Response) -> Vec<&str> {
    response.validations.iter().map(|v| v.field.as_str()).collect()
}

/// Sends raw JSON, for inputs the typed client cannot express.
async fn post_raw(client: &Client, path: &str, body: &str) -> (StatusCode, Value) {
    let resp = client
        .request(reqwest::Method::POST, path)
        .unwrap()
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

fn user_request(username: &str, roles: &[Role]) -> CreateUserRequest {
    CreateUserRequest {
        username: username.into(),
        email: format!("{username}@example.com"),
        name: String::new(),
        password: Some(PASSWORD.into()),
        login_type: LoginType::Password,
        roles: roles.to_vec(),
        status: UserStatus::Active,
    }
}

#[tokio::test]
async fn the_first_user_can_be_created_only_once() {
    let server = TestServer::start().await;
    let anonymous = server.client();
    assert!(!anonymous.first_user_exists().await.unwrap());

    let owner = server.owner().await;
    assert!(anonymous.first_user_exists().await.unwrap());
    let me = owner.user("me").await.unwrap();
    assert_eq!(me.username, "admin");
    assert_eq!(me.roles, [Role::Owner, Role::Member]);
    assert_eq!(me.organization_ids.len(), 1);

    let again = anonymous
        .create_first_user(&CreateFirstUserRequest {
            username: "intruder".into(),
            email: "intruder@example.com".into(),
            password: PASSWORD.into(),
            name: String::new(),
        })
        .await;
    let (status, body) = api_status(again);
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.message.contains("already been created"), "{body:?}");
}

#[tokio::test]
async fn login_succeeds_with_the_right_password_only() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    assert_eq!(owner.user("me").await.unwrap().email, OWNER_EMAIL);

    let anonymous = server.client();
    let wrong = anonymous
        .login(&LoginWithPasswordRequest { email: OWNER_EMAIL.into(), password: "not the password".into() })
        .await;
    let (status, wrong_body) = api_status(wrong);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // An unknown account gets the very same answer, so accounts cannot be probed.
    let unknown = anonymous
        .login(&LoginWithPasswordRequest { email: "nobody@example.com".into(), password: PASSWORD.into() })
        .await;
    assert_eq!(api_status(unknown), (StatusCode::UNAUTHORIZED, wrong_body));
    // The prebuilds user has no password and cannot log in.
    let system = anonymous
        .login(&LoginWithPasswordRequest { email: "prebuilds@system.invalid".into(), password: String::new() })
        .await;
    let (status, body) = api_status(system);
    assert_eq!((status, fields(&body)), (StatusCode::BAD_REQUEST, vec!["password"]));
    let system = anonymous
        .login(&LoginWithPasswordRequest { email: "prebuilds@system.invalid".into(), password: PASSWORD.into() })
        .await;
    assert_eq!(api_status(system).0, StatusCode::UNAUTHORIZED);

    // No token, a garbage token, a well-formed but unknown one: all 401.
    assert_eq!(api_status(anonymous.user("me").await).0, StatusCode::UNAUTHORIZED);
    let garbage = server.client().with_token("garbage");
    assert_eq!(api_status(garbage.user("me").await).0, StatusCode::UNAUTHORIZED);
    let forged = server.client().with_token(format!("{}-{}", "a".repeat(10), "b".repeat(22)));
    assert_eq!(api_status(forged.user("me").await).0, StatusCode::UNAUTHORIZED);
    // The right id with a wrong secret.
    let real = owner.token().unwrap();
    let wrong_secret = server.client().with_token(format!("{}-{}", &real[..10], "c".repeat(22)));
    assert_eq!(api_status(wrong_secret.user("me").await).0, StatusCode::UNAUTHORIZED);

    // Bearer authentication works as well as the header.
    let resp = server
        .client()
        .request(reqwest::Method::GET, "api/v2/users/me")
        .unwrap()
        .bearer_auth(real)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn suspended_users_cannot_log_in() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let mut req = user_request("sleepy", &[]);
    req.status = UserStatus::Suspended;
    owner.create_user(&req).await.unwrap();
    let (status, body) = api_status(
        server.client().login(&LoginWithPasswordRequest { email: req.email, password: PASSWORD.into() }).await,
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.message.contains("suspended"), "{body:?}");
}

#[tokio::test]
async fn an_expired_session_is_refused() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let id = &owner.token().unwrap()[..10];
    sqlx::query(
        "UPDATE api_keys SET created_at = now() - interval '1 day', expires_at = now() - interval '1 second' \
         WHERE id = $1",
    )
    .bind(id)
    .execute(&server.db.pool().await)
    .await
    .unwrap();
    let (status, body) = api_status(owner.user("me").await);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.message.contains("expired"), "{body:?}");
}

#[tokio::test]
async fn a_used_session_slides_its_expiry_forward() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let id = &owner.token().unwrap()[..10];
    sqlx::query(
        "UPDATE api_keys SET expires_at = now() + interval '1 minute', last_used_at = now() - interval '2 minutes' \
         WHERE id = $1",
    )
    .bind(id)
    .execute(&server.db.pool().await)
    .await
    .unwrap();
    owner.user("me").await.unwrap();
    let hours_left: f64 =
        sqlx::query_scalar("SELECT extract(epoch FROM expires_at - now())::float8 / 3600 FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_one(&server.db.pool().await)
            .await
            .unwrap();
    assert!(hours_left > 23.0, "expiry extended to a full session, got {hours_left} h");
}

#[tokio::test]
async fn session_tokens_are_stored_only_as_hashes() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let token = owner.token().unwrap().to_owned();
    let (id, secret) = token.split_once('-').unwrap();

    let rows: Vec<String> =
        sqlx::query_scalar("SELECT k::text FROM api_keys k").fetch_all(&server.db.pool().await).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].contains(id), "the id is the lookup key");
    assert!(!rows[0].contains(secret), "the secret must not be stored: {}", rows[0]);
    let stored: Vec<u8> = sqlx::query_scalar("SELECT hashed_secret FROM api_keys WHERE id = $1")
        .bind(id)
        .fetch_one(&server.db.pool().await)
        .await
        .unwrap();
    assert_eq!(stored, Sha256::digest(secret.as_bytes()).to_vec());

    // Passwords are argon2id PHC strings, not the password.
    let hash: String = sqlx::query_scalar("SELECT hashed_password FROM users WHERE username = 'admin'")
        .fetch_one(&server.db.pool().await)
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(PASSWORD));
}

#[tokio::test]
async fn logout_ends_the_session() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let other_session = server.login(OWNER_EMAIL).await;
    owner.logout().await.unwrap();
    assert_eq!(api_status(owner.user("me").await).0, StatusCode::UNAUTHORIZED);
    assert!(other_session.user("me").await.is_ok(), "only the session that logged out ends");
}

#[tokio::test]
async fn only_owners_create_users() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let member = server.user(&owner, "member", &[]).await;
    let admin = server.user(&owner, "tadmin", &[Role::TemplateAdmin]).await;

    for (who, client) in [("member", &member), ("template-admin", &admin)] {
        let (status, body) = api_status(client.create_user(&user_request("newbie", &[])).await);
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}");
        assert_eq!(body.message, "You may not create users.", "{who}");
        assert_eq!(body.detail, "It needs the owner role.", "{who}");
    }
    let (status, _) = api_status(server.client().create_user(&user_request("newbie", &[])).await);
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let created = owner.create_user(&user_request("newbie", &[Role::TemplateAdmin])).await.unwrap();
    assert_eq!(created.roles, [Role::TemplateAdmin, Role::Member]);
    assert!(!created.is_system);
}

#[tokio::test]
async fn bad_input_gets_a_4xx_naming_the_field() {
    let server = TestServer::start().await;
    let owner = server.owner().await;

    let cases: &[(&str, &str, StatusCode, &str)] = &[
        ("api/v2/users", r#"{"email": "a@b.co", "password": "longenough"}"#, StatusCode::BAD_REQUEST, "username"),
        (
            "api/v2/users",
            r#"{"username": "x", "email": "a@b.co", "password": "longenough", "admin": true}"#,
            StatusCode::BAD_REQUEST,
            "admin",
        ),
        (
            "api/v2/users",
            r#"{"username": "x", "email": "a@b.co", "password": "longenough", "roles": ["owner", "root"]}"#,
            StatusCode::BAD_REQUEST,
            "roles[1]",
        ),
        ("api/v2/users", r#"{"username": 7, "email": "a@b.co"}"#, StatusCode::BAD_REQUEST, "username"),
        (
            "api/v2/users",
            r#"{"username": "bad_name", "email": "a@b.co", "password": "longenough"}"#,
            StatusCode::BAD_REQUEST,
            "username",
        ),
        (
            "api/v2/users",
            r#"{"username": "ok", "email": "not-an-email", "password": "longenough"}"#,
            StatusCode::BAD_REQUEST,
            "email",
        ),
        (
            "api/v2/users",
            r#"{"username": "ok", "email": "a@b.co", "password": "short"}"#,
            StatusCode::BAD_REQUEST,
            "password",
        ),
        ("api/v2/users", r#"{"username": "ok", "email": "a@b.co"}"#, StatusCode::BAD_REQUEST, "password"),
        (
            "api/v2/users",
            r#"{"username": "ok", "email": "a@b.co", "password": "longenough", "login_type": "none"}"#,
            StatusCode::BAD_REQUEST,
            "password",
        ),
        (
            "api/v2/users",
            r#"{"username": "ok", "email": "a@b.co", "login_type": "github"}"#,
            StatusCode::BAD_REQUEST,
            "login_type",
        ),
        ("api/v2/users", r#"{"username": "ok", "#, StatusCode::BAD_REQUEST, "body"),
        (
            "api/v2/users",
            r#"{"username": "admin", "email": "x@b.co", "password": "longenough"}"#,
            StatusCode::CONFLICT,
            "username",
        ),
        (
            "api/v2/users",
            r#"{"username": "other", "email": "ADMIN@example.com", "password": "longenough"}"#,
            StatusCode::CONFLICT,
            "email",
        ),
        ("api/v2/users/login", r#"{"email": "a@b.co"}"#, StatusCode::BAD_REQUEST, "password"),
    ];
    for (path, body, want_status, want_field) in cases {
        let (status, value) = post_raw(&owner, path, body).await;
        assert_eq!(status, *want_status, "{body}: {value}");
        let response: warmspace_sdk::Response = serde_json::from_value(value.clone()).unwrap();
        assert!(!response.message.is_empty(), "{value}");
        assert_eq!(fields(&response), [*want_field], "{body}: {value}");
    }

    // Query parameters of the listing.
    for (query, field) in [
        ("q=status:gone", "q"),
        ("q=colour:red", "q"),
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("offset=-1", "offset"),
        ("include_system=maybe", "include_system"),
    ] {
        let resp = owner.request(reqwest::Method::GET, &format!("api/v2/users?{query}")).unwrap().send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: warmspace_sdk::Response = resp.json().await.unwrap();
        assert_eq!(fields(&body), [field], "{query}");
    }

    // Unknown routes and methods answer JSON too.
    let resp = owner.request(reqwest::Method::GET, "api/v2/nothing-here").unwrap().send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.json::<warmspace_sdk::Response>().await.is_ok());
    let resp = owner.request(reqwest::Method::DELETE, "api/v2/users/login").unwrap().send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn listings_hide_system_users_and_respect_roles() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let member = server.user(&owner, "member", &[]).await;
    let admin = server.user(&owner, "tadmin", &[Role::TemplateAdmin]).await;
    let mut robot = user_request("robot", &[]);
    robot.login_type = LoginType::None;
    robot.password = None;
    owner.create_user(&robot).await.unwrap();

    let names = |client: Client, query: UsersQuery| async move {
        let resp = client.users(&query).await.unwrap();
        assert_eq!(resp.users.len() as i64, resp.count);
        resp.users.into_iter().map(|u| u.username).collect::<Vec<_>>()
    };
    let q = |q: &str| UsersQuery { q: Some(q.into()), ..Default::default() };

    assert_eq!(names(owner.clone(), UsersQuery::default()).await, ["admin", "member", "tadmin", "robot"]);
    let everyone = UsersQuery { include_system: true, ..Default::default() };
    assert_eq!(
        names(owner.clone(), everyone.clone()).await,
        ["prebuilds", "lifecycle", "admin", "member", "tadmin", "robot"]
    );
    assert_eq!(names(admin.clone(), UsersQuery::default()).await.len(), 4, "template admins read all users");
    assert_eq!(names(member.clone(), everyone).await, ["member"], "members see only themselves");

    assert_eq!(names(owner.clone(), q("role:owner")).await, ["admin"]);
    assert_eq!(names(owner.clone(), q("role:template-admin")).await, ["tadmin"]);
    assert_eq!(names(owner.clone(), q("login_type:none")).await, ["robot"]);
    assert_eq!(names(owner.clone(), q("login_type:password status:active tad")).await, ["tadmin"]);
    let page = UsersQuery { limit: Some(2), offset: Some(1), ..Default::default() };
    let resp = owner.users(&page).await.unwrap();
    assert_eq!(resp.users.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(), ["member", "tadmin"]);
    assert_eq!(resp.count, 4);

    // Reading one user follows the same rules.
    assert_eq!(member.user("member").await.unwrap().username, "member");
    assert_eq!(api_status(member.user("admin").await).0, StatusCode::FORBIDDEN);
    assert_eq!(admin.user("member").await.unwrap().roles, [Role::Member]);
    let by_id = owner.user("c42fdf75-3097-471c-8c33-fb52454d81c0").await.unwrap();
    assert!(by_id.is_system && by_id.roles.is_empty());
    assert_eq!(api_status(owner.user("ghost").await).0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_openapi_document_describes_the_api() {
    let server = TestServer::start().await;
    let doc: Value = crate::common::openapi_document(&server).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/healthz",
        "/api/v2/buildinfo",
        "/api/v2/users/first",
        "/api/v2/users/login",
        "/api/v2/users/logout",
        "/api/v2/users",
        "/api/v2/users/{user}",
    ] {
        assert!(paths.contains_key(path), "{path} missing from {:?}", paths.keys());
    }
    assert!(paths["/api/v2/users"]["post"].is_object());
    assert!(paths["/api/v2/users"]["get"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["session_token"]["name"],
        json!(warmspace_sdk::SESSION_TOKEN_HEADER)
    );
    assert!(doc["components"]["schemas"]["User"].is_object());

    let info = server.client().build_info().await.unwrap();
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    let health = reqwest::get(server.url.join("healthz").unwrap()).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn refusals_and_misses_name_what_was_asked() {
    let server = TestServer::start().await;
    let owner = server.owner().await;
    let member = server.user(&owner, "member", &[]).await;

    // A refusal names the attempt, and its detail the roles that would allow it.
    let (status, body) = api_status(member.prebuilds_status().await);
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body.message, "You may not read prebuild status.");
    assert_eq!(body.detail, "It needs the template-admin or owner role.");
    let (_, body) = api_status(member.user("admin").await);
    assert_eq!(
        (body.message.as_str(), body.detail.as_str()),
        ("You may not read other users.", "It needs the template-admin or owner role.")
    );
    // Claim statistics count everyone's requests: not for members.
    let (status, body) = api_status(member.claim_stats(&Default::default()).await);
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body.message, "You may not read prebuild claims.");

    // A 404 names what the path named.
    let (status, body) = api_status(owner.workspace_by_name("ghost", "dev").await);
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body.message, "User \"ghost\" not found.");
    let (_, body) = api_status(member.workspace_by_name("me", "nosuch").await);
    assert_eq!(body.message, "Workspace \"member/nosuch\" not found.");
}

#[tokio::test]
async fn owners_suspend_reactivate_and_change_the_roles_of_others() {
    let server = TestServer::start_with(crate::common::quiet(), 0).await;
    let owner = server.owner().await;
    let alice = server.user(&owner, "alice", &[]).await;
    let bob = server.user(&owner, "bob", &[Role::TemplateAdmin]).await;

    // Only owners, and never on themselves or a system user.
    assert_eq!(api_status(bob.suspend_user("alice").await).0, StatusCode::FORBIDDEN);
    assert_eq!(api_status(bob.set_user_roles("alice", &[Role::Owner]).await).0, StatusCode::FORBIDDEN);
    let (status, body) = api_status(owner.suspend_user("admin").await);
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.message.contains("yourself"), "{body:?}");
    let (status, body) = api_status(owner.set_user_roles("admin", &[]).await);
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.message.contains("your own roles"), "{body:?}");
    assert_eq!(api_status(alice.suspend_user("alice").await).0, StatusCode::CONFLICT);
    assert_eq!(api_status(owner.suspend_user("prebuilds").await).0, StatusCode::CONFLICT);
    assert_eq!(api_status(owner.suspend_user("nobody").await).0, StatusCode::NOT_FOUND);

    // Suspended: alice's session stops working and she cannot log in.
    let suspended = owner.suspend_user("alice").await.unwrap();
    assert_eq!(suspended.status, UserStatus::Suspended);
    assert_eq!(api_status(alice.user("me").await).0, StatusCode::UNAUTHORIZED);
    let login = LoginWithPasswordRequest { email: "alice@example.com".into(), password: PASSWORD.into() };
    let (status, body) = api_status(server.client().login(&login).await);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.message.contains("suspended"), "{body:?}");
    // Reactivated (by id, too), she logs in again.
    let resp = owner.request(reqwest::Method::PUT, "api/v2/users/alice/status/delete").unwrap().send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "only suspend and activate");
    let id = suspended.id.to_string();
    assert_eq!(owner.activate_user(&id).await.unwrap().status, UserStatus::Active);
    server.client().login(&login).await.unwrap();

    // Roles are replaced; member stays implied.
    assert_eq!(
        owner.set_user_roles("alice", &[Role::TemplateAdmin]).await.unwrap().roles,
        [Role::TemplateAdmin, Role::Member]
    );
    assert_eq!(owner.set_user_roles("bob", &[]).await.unwrap().roles, [Role::Member]);
    assert_eq!(
        owner.set_user_roles("bob", &[Role::Owner, Role::Member, Role::Owner]).await.unwrap().roles,
        [Role::Owner, Role::Member]
    );
    let resp = owner
        .request(reqwest::Method::PUT, "api/v2/users/alice/roles")
        .unwrap()
        .header("content-type", "application/json")
        .body(r#"{"roles": ["root"]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["validations"][0]["field"], "roles[0]", "{body}");
}

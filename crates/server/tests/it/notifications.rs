//! The inbox, driven through the public HTTP API. Notifications come from the
//! server's sender, or from the store plus an announcement on the inbox
//! channel (what any other sender does).

use std::time::Duration;

use futures::{Stream, StreamExt};
use uuid::Uuid;
use warmspace_sdk::{
    Client, ClientError, CreateUserRequest, Notification, NotificationsQuery, Role, StatusCode, UserStatus,
};
use warmspace_server::testing::{PASSWORD, TestServer};

use crate::common::api_status;

const KIND: &str = "test_notice";

/// Sends `title` to `user` and announces it, as a sender does after committing.
async fn notify(server: &TestServer, user: Uuid, title: &str) -> Uuid {
    let ids = server.store.notify(&[user], KIND, title, &format!("About {title}."), None).await.unwrap();
    server.domain.events().notification(user, ids[0]).await;
    ids[0]
}

/// The stream's next notification; fails the test after 10 seconds without one.
async fn next(stream: &mut (impl Stream<Item = Result<Notification, ClientError>> + Unpin)) -> Notification {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a notification within 10s")
        .expect("the stream is still open")
        .unwrap()
}

async fn user_id(client: &Client) -> Uuid {
    client.user("me").await.unwrap().id
}

async fn inbox(client: &Client) -> Vec<Notification> {
    client.notifications(&NotificationsQuery::default()).await.unwrap().notifications
}

async fn titles(client: &Client, unread: bool) -> Vec<String> {
    let inbox = client.notifications(&NotificationsQuery { unread, limit: None }).await.unwrap();
    inbox.notifications.into_iter().map(|n| n.title).collect()
}

async fn unread_count(client: &Client) -> i64 {
    client.notifications(&NotificationsQuery::default()).await.unwrap().unread_count
}

#[tokio::test]
async fn active_owners_and_template_admins_are_notified_and_nobody_else() {
    let server = TestServer::start_with(Default::default(), 0).await;
    let owner = server.owner().await;
    let admin = server.user(&owner, "templates", &[Role::TemplateAdmin]).await;
    let member = server.user(&owner, "member", &[]).await;
    let suspended = owner
        .create_user(&CreateUserRequest {
            username: "suspended".into(),
            email: "suspended@example.com".into(),
            name: String::new(),
            password: Some(PASSWORD.into()),
            login_type: Default::default(),
            roles: vec![Role::TemplateAdmin],
            status: UserStatus::Suspended,
        })
        .await
        .unwrap();
    let workspace = Uuid::new_v4();

    let replaced = "prebuild_resources_replaced";
    server.domain.notify_template_admins(replaced, "Replaced", "Details.", Some(workspace)).await;

    for client in [&owner, &admin] {
        let listed = inbox(client).await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        let n = &listed[0];
        assert_eq!((n.kind.as_str(), n.title.as_str(), n.content.as_str()), (replaced, "Replaced", "Details."));
        assert_eq!((n.target_id, n.read_at), (Some(workspace), None));
    }
    assert_eq!(inbox(&member).await, []);
    // A suspended user cannot log in to look, so ask the store.
    assert!(server.store.notifications(suspended.id, false, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_inbox_lists_counts_and_marks_read() {
    let server = TestServer::start_with(Default::default(), 0).await;
    let owner = server.owner().await;
    let member = server.user(&owner, "member", &[]).await;
    let member_id = user_id(&member).await;
    notify(&server, member_id, "first").await;
    let second = notify(&server, member_id, "second").await;
    notify(&server, member_id, "third").await;
    notify(&server, user_id(&owner).await, "the owner's").await;

    // Newest first, only one's own, and the count covers more than the page.
    assert_eq!(titles(&member, false).await, ["third", "second", "first"]);
    let page = member.notifications(&NotificationsQuery { unread: false, limit: Some(2) }).await.unwrap();
    let page_titles: Vec<&str> = page.notifications.iter().map(|n| n.title.as_str()).collect();
    assert_eq!((page_titles, page.unread_count), (vec!["third", "second"], 3));
    assert_eq!(page.notifications[1].content, "About second.");
    assert_eq!(page.notifications[1].kind, KIND);

    member.mark_notification_read(second).await.unwrap();
    assert_eq!(unread_count(&member).await, 2);
    assert_eq!(titles(&member, true).await, ["third", "first"]);
    let listed = inbox(&member).await;
    let read_at = listed.iter().find(|n| n.id == second).unwrap().read_at.expect("marked read");
    assert!(listed.iter().filter(|n| n.id != second).all(|n| n.read_at.is_none()), "{listed:?}");
    // Marking it again keeps the time it was first read.
    member.mark_notification_read(second).await.unwrap();
    let again = inbox(&member).await;
    assert_eq!(again.iter().find(|n| n.id == second).unwrap().read_at, Some(read_at));

    assert_eq!(member.mark_all_notifications_read().await.unwrap().marked_read, 2);
    assert_eq!(unread_count(&member).await, 0);
    assert_eq!(titles(&member, true).await, Vec::<String>::new());
    assert_eq!(titles(&member, false).await, ["third", "second", "first"]);
    assert_eq!(member.mark_all_notifications_read().await.unwrap().marked_read, 0);
    // Reading all of one's own leaves everybody else's inbox alone.
    assert_eq!(unread_count(&owner).await, 1);
}

#[tokio::test]
async fn nobody_can_mark_somebody_elses_notification() {
    let server = TestServer::start_with(Default::default(), 0).await;
    let owner = server.owner().await;
    let admin = server.user(&owner, "templates", &[Role::TemplateAdmin]).await;
    let member = server.user(&owner, "member", &[]).await;
    let members = notify(&server, user_id(&member).await, "private").await;

    // Not even an owner; and it looks exactly like a notification that does not exist.
    for other in [&owner, &admin] {
        let (status, body) = api_status(other.mark_notification_read(members).await);
        assert_eq!(status, StatusCode::NOT_FOUND, "{body:?}");
        assert_eq!(api_status(other.mark_notification_read(Uuid::new_v4()).await), (status, body));
        assert_eq!(titles(other, false).await, Vec::<String>::new());
        other.mark_all_notifications_read().await.unwrap();
    }
    assert_eq!(unread_count(&member).await, 1);
}

#[tokio::test]
async fn bad_requests_are_refused() {
    let server = TestServer::start_with(Default::default(), 0).await;
    let owner = server.owner().await;
    for limit in [0, 1001] {
        let (status, body) =
            api_status(owner.notifications(&NotificationsQuery { unread: false, limit: Some(limit) }).await);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body.validations[0].field, "limit");
    }
    let anonymous = server.client();
    assert_eq!(api_status(anonymous.notifications(&NotificationsQuery::default()).await).0, StatusCode::UNAUTHORIZED);
    assert_eq!(api_status(anonymous.mark_all_notifications_read().await).0, StatusCode::UNAUTHORIZED);
    let watch = anonymous.watch_notifications().await.map(|_| "a stream");
    assert_eq!(api_status(watch).0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_watch_stream_delivers_new_notifications_of_the_watcher_only() {
    let server = TestServer::start_with(Default::default(), 0).await;
    let owner = server.owner().await;
    let member = server.user(&owner, "member", &[]).await;
    let member_id = user_id(&member).await;
    notify(&server, member_id, "before").await;

    let mut stream = Box::pin(member.watch_notifications().await.unwrap());
    notify(&server, user_id(&owner).await, "not the member's").await;
    let live = notify(&server, member_id, "live").await;
    let received = next(&mut stream).await;
    assert_eq!(received.id, live);
    // The stream carries exactly what the inbox lists.
    assert_eq!(received, inbox(&member).await[0]);

    // Neither what existed before nor somebody else's came first, nor comes now.
    let later = notify(&server, member_id, "later").await;
    assert_eq!(next(&mut stream).await.id, later);
}

#[tokio::test]
async fn the_watch_stream_delivers_what_the_servers_sender_sends() {
    let server = TestServer::start_with(Default::default(), 0).await;
    let owner = server.owner().await;
    let mut stream = Box::pin(owner.watch_notifications().await.unwrap());

    server.domain.notify_template_admins(KIND, "Live", "Sent while watching.", None).await;

    let received = next(&mut stream).await;
    assert_eq!(received.title, "Live");
    assert_eq!(received, inbox(&owner).await[0]);
}

#[tokio::test]
async fn the_inbox_is_described_in_the_openapi_document() {
    let server = TestServer::start_with(Default::default(), 0).await;
    let doc: serde_json::Value = crate::common::openapi_document(&server).await;
    for (path, method) in [
        ("/api/v2/notifications/inbox", "get"),
        ("/api/v2/notifications/inbox/watch", "get"),
        ("/api/v2/notifications/inbox/{id}/read", "put"),
        ("/api/v2/notifications/inbox/read-all", "put"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing");
    }
    for schema in ["Notification", "NotificationsResponse", "MarkAllNotificationsReadResponse"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema} missing");
    }
}

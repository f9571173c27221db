//! A scripted stand-in for the server's agent endpoints, for tests of the
//! agent's behaviour as a whole: plain HTTP/1.1 on a local port, one request
//! per connection, every request recorded, each answer chosen by a function
//! of the requests so far.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The path with its query.
    pub path: String,
    pub body: String,
}

impl Request {
    /// The path without its query.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// Keep the connection open after the body (an event stream waiting).
    pub hold: bool,
}

impl Reply {
    pub fn json(status: u16, body: impl serde::Serialize) -> Reply {
        Reply { status, content_type: "application/json", body: serde_json::to_string(&body).unwrap(), hold: false }
    }

    pub fn ok() -> Reply {
        Reply::json(200, serde_json::json!({ "message": "ok" }))
    }

    pub fn status(status: u16) -> Reply {
        Reply::json(status, serde_json::json!({ "message": format!("status {status}") }))
    }

    /// An event stream sending `events` (name, data), then closing.
    pub fn events(events: &[(&str, &str)]) -> Reply {
        let body = events.iter().map(|(name, data)| format!("event: {name}\ndata: {data}\n\n")).collect();
        Reply { status: 200, content_type: "text/event-stream", body, hold: false }
    }
}

/// Chooses the answer to the last of the requests so far.
pub type Handler = dyn Fn(&[Request]) -> Reply + Send + Sync;

pub struct FakeServer {
    pub url: url::Url,
    requests: Arc<Mutex<Vec<Request>>>,
    accept: JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl FakeServer {
    pub async fn start(handler: impl Fn(&[Request]) -> Reply + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap()).parse().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept = tokio::spawn({
            let requests = requests.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else { return };
                    tokio::spawn(serve(stream, requests.clone(), handler.clone()));
                }
            }
        });
        FakeServer { url, requests, accept }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(mut stream: TcpStream, requests: Arc<Mutex<Vec<Request>>>, handler: Arc<Handler>) {
    let Some(request) = read_request(&mut stream).await else { return };
    let path = request.path.clone();
    let reply = {
        let mut requests = requests.lock().unwrap();
        requests.push(request);
        handler(&requests)
    };
    let length = if reply.content_type == "text/event-stream" || reply.status == 204 {
        String::new()
    } else {
        format!("content-length: {}\r\n", reply.body.len())
    };
    let body = if reply.status == 204 { "" } else { reply.body.as_str() };
    let head = format!(
        "HTTP/1.1 {} Fake\r\ncontent-type: {}\r\nconnection: close\r\n{length}\r\n",
        reply.status, reply.content_type
    );
    let written = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.flush().await
    };
    if let Err(err) = written.await {
        // The agent hung up before reading the answer (it was shutting down);
        // the request is recorded, and there is no one left to hold a stream for.
        tracing::debug!(%path, error = %err, "the fake server could not answer");
        return;
    }
    if reply.hold {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut request_line = head.lines().next()?.split(' ');
    let (method, path) = (request_line.next()?.to_owned(), request_line.next()?.to_owned());
    let length: usize = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    Some(Request { method, path, body })
}

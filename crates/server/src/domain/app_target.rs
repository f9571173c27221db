//! Where a workspace app is, seen from both ends: its path on the server
//! (`/@OWNER/WORKSPACE.AGENT/apps/APP/`, like Coder's path-based apps) and
//! the place inside the workspace its URL names, which the agent reaches on
//! its loopback. Pure: no I/O.

/// An app as the server's path names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppAddress<'a> {
    pub owner: &'a str,
    pub workspace: &'a str,
    /// Left out (`/@OWNER/WORKSPACE/apps/APP/`) when the workspace has one agent.
    pub agent: Option<&'a str>,
    pub app: &'a str,
}

impl<'a> AppAddress<'a> {
    /// From the path's segments; `workspace` is `NAME` or `NAME.AGENT`
    /// (neither name holds a dot).
    pub fn new(owner: &'a str, workspace: &'a str, app: &'a str) -> AppAddress<'a> {
        let (workspace, agent) = match workspace.split_once('.') {
            Some((workspace, agent)) => (workspace, Some(agent)),
            None => (workspace, None),
        };
        AppAddress { owner, workspace, agent, app }
    }

    /// The app's path on the server, ending in `/` (its root).
    pub fn path(&self) -> String {
        let agent = self.agent.map(|a| format!(".{a}")).unwrap_or_default();
        format!("/@{}/{}{agent}/apps/{}/", self.owner, self.workspace, self.app)
    }
}

/// Where inside the workspace an app listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppTarget {
    /// The TCP port on the workspace's loopback.
    pub port: u16,
    /// Whether the app speaks https (its certificate is not checked: see `api::app_tls`).
    pub tls: bool,
    /// The `Host` the app expects (its URL's host and port).
    pub host: String,
    /// The path the app is served under, without a trailing `/` (empty for its root).
    pub base_path: String,
}

impl AppTarget {
    /// The app's URL, if the server can reach it: http or https on the
    /// workspace's loopback (`localhost` or `127.0.0.1`, where the agent
    /// dials), else why not.
    pub fn parse(url: &str) -> Result<AppTarget, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("Its URL {url:?} is not a URL: {e}."))?;
        let tls = match parsed.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(format!("Its URL {url} is {other}, not http or https.")),
        };
        let local = match parsed.host() {
            Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
            _ => false,
        };
        if !local {
            return Err(format!(
                "Its URL {url} is not on the workspace's loopback: only apps at http(s)://localhost:PORT \
                 and http(s)://127.0.0.1:PORT are opened through the server."
            ));
        }
        let port = parsed.port_or_known_default().unwrap_or(80);
        let host = format!("{}:{port}", parsed.host_str().unwrap_or("localhost"));
        Ok(AppTarget { port, tls, host, base_path: parsed.path().trim_end_matches('/').to_owned() })
    }

    /// The app's host name, without its port (TLS names the server by it).
    pub fn host_name(&self) -> &str {
        self.host.rsplit_once(':').map_or(self.host.as_str(), |(name, _)| name)
    }

    /// The path and query to ask the app for, for `rest` (the request's
    /// path below the app's root on the server) and its query.
    pub fn path_and_query(&self, rest: &str, query: Option<&str>) -> String {
        let mut target = format!("{}/{}", self.base_path, rest.trim_start_matches('/'));
        if let Some(query) = query {
            target.push('?');
            target.push_str(query);
        }
        target
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn loopback_http_apps_are_reached_and_others_refused() {
        let target = AppTarget::parse("http://localhost:3000").unwrap();
        assert_eq!(
            target,
            AppTarget { port: 3000, tls: false, host: "localhost:3000".into(), base_path: String::new() }
        );
        let secure = AppTarget::parse("https://localhost").unwrap();
        assert_eq!((secure.port, secure.tls, secure.host_name()), (443, true, "localhost"));
        let docs = AppTarget::parse("http://127.0.0.1/docs/").unwrap();
        assert_eq!((docs.port, docs.base_path.as_str()), (80, "/docs"));
        assert_eq!(docs.path_and_query("a/b", Some("x=1")), "/docs/a/b?x=1");
        assert_eq!(target.path_and_query("", None), "/");
        for (url, why) in [
            ("https://10.0.0.1:3000", "loopback"),
            ("http://10.0.0.1:3000", "loopback"),
            ("http://example.com", "loopback"),
            ("http://[::1]:3000", "loopback"),
            ("ftp://localhost", "ftp"),
            ("not a url", "not a URL"),
        ] {
            let refused = AppTarget::parse(url).unwrap_err();
            assert!(refused.contains(why), "{url}: {refused}");
        }
    }

    #[test]
    fn an_address_names_its_agent_or_not() {
        let address = AppAddress::new("alice", "box.main", "web");
        assert_eq!((address.workspace, address.agent), ("box", Some("main")));
        assert_eq!(address.path(), "/@alice/box.main/apps/web/");
        assert_eq!(AppAddress::new("alice", "box", "web").agent, None);
    }

    proptest! {
        #[test]
        fn any_port_and_path_on_the_loopback_is_kept(port in 1u16.., path in "(/[a-z0-9]{1,8}){0,3}/?", rest in "[a-z0-9/]{0,12}") {
            let target = AppTarget::parse(&format!("http://127.0.0.1:{port}{path}")).unwrap();
            prop_assert_eq!(target.port, port);
            let asked = target.path_and_query(&rest, None);
            prop_assert!(asked.starts_with(path.trim_end_matches('/')));
            prop_assert!(asked.ends_with(rest.trim_start_matches('/')));
            prop_assert!(!asked.contains("//") || rest.contains("//"));
        }

        #[test]
        fn only_loopback_addresses_are_reached(a in 0u8.., b in 0u8.., c in 0u8.., d in 0u8..) {
            let url = format!("http://{a}.{b}.{c}.{d}:8080");
            prop_assert_eq!(AppTarget::parse(&url).is_ok(), (a, b, c, d) == (127, 0, 0, 1));
        }
    }
}

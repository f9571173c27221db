//! The client's saved state: the server URL and session token written by
//! `login`, overridable by `--url`/`WARMSPACE_URL` and
//! `--token`/`WARMSPACE_SESSION_TOKEN`.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{Context, bail};
use url::{Host, Url};
use warmspace_sdk::Client;

pub struct Config {
    dir: PathBuf,
    url: Option<Url>,
    token: Option<String>,
}

impl Config {
    pub fn new(dir: Option<PathBuf>, url: Option<Url>, token: Option<String>) -> anyhow::Result<Config> {
        let dir = match dir {
            Some(dir) => dir,
            None => dirs::config_dir()
                .context("no config directory for this user; set WARMSPACE_CONFIG_DIR")?
                .join("warmspace"),
        };
        Ok(Config { dir, url, token })
    }

    fn read(&self, name: &str) -> anyhow::Result<Option<String>> {
        let path = self.dir.join(name);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_owned()).filter(|t| !t.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn write(&self, name: &str, value: &str) -> anyhow::Result<()> {
        fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        let path = self.dir.join(name);
        let mut file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        file.write_all(value.as_bytes())?;
        Ok(())
    }

    /// Where the client keeps its URL and session.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The server URL given by flag or environment (not saved).
    pub fn url_flag(&self) -> Option<&Url> {
        self.url.as_ref()
    }

    /// The server URL: the flag or environment, else the saved one.
    pub fn url(&self) -> anyhow::Result<Option<Url>> {
        if let Some(url) = &self.url {
            return Ok(Some(url.clone()));
        }
        match self.read("url")? {
            Some(text) => Ok(Some(Url::parse(&text).with_context(|| format!("the saved URL {text:?} is invalid"))?)),
            None => Ok(None),
        }
    }

    pub fn save_session(&self, url: &Url, token: &str) -> anyhow::Result<()> {
        self.write("url", url.as_str())?;
        self.write("session", token)
    }

    pub fn forget_session(&self) -> anyhow::Result<()> {
        match fs::remove_file(self.dir.join("session")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// A client for the configured server with the configured session.
    pub fn client(&self) -> anyhow::Result<Client> {
        let Some(url) = self.url()? else {
            bail!("not logged in: run `warmspace login URL` (or set WARMSPACE_URL and WARMSPACE_SESSION_TOKEN)");
        };
        let token = match &self.token {
            Some(token) => token.clone(),
            None => self.read("session")?.with_context(|| {
                format!("no session for {url}: run `warmspace login {url}` (or set WARMSPACE_SESSION_TOKEN)")
            })?,
        };
        Ok(Client::new(url).with_token(token))
    }
}

/// A server URL as people type it: a full URL, or just `host[:port]`. A host
/// without a scheme is spoken to over http when it is this machine
/// (`localhost`, a loopback address) and over https otherwise, as Coder's
/// `login` assumes.
pub fn server_url(text: &str) -> Result<Url, String> {
    let invalid = |e: url::ParseError| format!("{text:?} is not a URL ({e})");
    if text.contains("://") {
        return Url::parse(text).map_err(invalid);
    }
    let url = Url::parse(&format!("http://{text}")).map_err(invalid)?;
    let this_machine = match url.host() {
        Some(Host::Domain(name)) => name == "localhost",
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if this_machine { Ok(url) } else { Url::parse(&format!("https://{text}")).map_err(invalid) }
}

#[cfg(test)]
mod tests {
    use super::server_url;

    #[test]
    fn a_host_without_a_scheme_gets_one() {
        let url = |text: &str| server_url(text).unwrap().to_string();
        assert_eq!(url("localhost:3000"), "http://localhost:3000/");
        assert_eq!(url("127.0.0.1:3000"), "http://127.0.0.1:3000/");
        assert_eq!(url("[::1]:3000"), "http://[::1]:3000/");
        assert_eq!(url("warmspace.example.com"), "https://warmspace.example.com/");
        assert_eq!(url("http://warmspace.example.com:8080"), "http://warmspace.example.com:8080/");
        assert_eq!(url("https://localhost"), "https://localhost/");
        assert!(server_url("http://").is_err());
    }
}

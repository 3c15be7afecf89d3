//! The `<Plugin rest>` block, parsed into a typed struct. Every error names
//! the key path, and a config with any error is refused as a whole.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::model::{ConfigItem, ConfigValue};

pub const DEFAULT_PORT: u16 = 9196;
pub const DEFAULT_HISTORY_SIZE: usize = 120;
pub const DEFAULT_NOTIFICATION_BUFFER_SIZE: usize = 1000;
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1 << 20;
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
pub const DEFAULT_CLIENT_TIMEOUT: f64 = 10.0;
/// `BusyPoll` when none is given, in microseconds.
pub const DEFAULT_BUSY_POLL_US: u64 = 50;
/// `SocketPerms` when none is given: owner and group may connect.
pub const DEFAULT_SOCKET_PERMS: u32 = 0o660;
/// StateDir when none is configured: under collectd's BaseDir.
pub const STATE_SUBDIR: &str = "rest";

/// The two roles: `reader` may call every GET, `admin` everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Reader,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reader" => Some(Role::Reader),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Admin => "admin",
        }
    }
}

/// The `<Keystone>` block: how the plugin validates OpenStack tokens.
#[derive(Clone, PartialEq)]
pub struct KeystoneConfig {
    /// The identity API, e.g. `http://127.0.0.1:5000/v3`.
    pub url: String,
    pub username: String,
    pub password: String,
    pub project_name: String,
    pub user_domain_name: String,
    pub project_domain_name: String,
    /// Keystone role names mapped to our roles.
    pub reader_role: String,
    pub admin_role: String,
    /// Seconds a validation is cached (never past the token's expiry).
    pub cache_ttl: f64,
    /// PEM file of the CA that signs an https Keystone; default: the
    /// system's roots.
    pub ca_cert_file: Option<PathBuf>,
}

impl fmt::Debug for KeystoneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the password.
        f.debug_struct("KeystoneConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("project_name", &self.project_name)
            .finish_non_exhaustive()
    }
}

/// Static role tokens, never printed.
#[derive(Clone, Default, PartialEq)]
pub struct Tokens(pub Vec<(Role, String)>);

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokens({} configured)", self.0.len())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// TCP addresses. Empty when only a `SocketFile` is served.
    pub listen: Vec<SocketAddr>,
    /// `SocketFile`: HTTP on a Unix domain socket at this path too.
    pub socket_file: Option<PathBuf>,
    /// `SocketPerms`: the socket file's mode (who may connect).
    pub socket_perms: u32,
    /// `SocketGroup`: the socket file's group, by name.
    pub socket_group: Option<String>,
    /// `AuthToken ROLE TOKEN` lines.
    pub tokens: Tokens,
    /// `TokenFile`: more tokens, one `ROLE TOKEN` per line.
    pub token_file: Option<PathBuf>,
    pub keystone: Option<KeystoneConfig>,
    /// PEM certificate chain and private key: HTTPS only when set.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers, and its body.
    pub client_timeout: f64,
    /// Requests per second one connection may make (0: no limit).
    pub rate_limit: f64,
    /// Microseconds a connection thread polls for a quick client's next
    /// request before it sleeps in read(2) (0: never polls).
    pub busy_poll_us: u64,
    /// None: `<BaseDir>/rest`, decided at init when BaseDir is known.
    pub state_dir: Option<PathBuf>,
    pub history_size: usize,
    pub notification_buffer_size: usize,
    pub max_request_bytes: usize,
    /// Seconds between heartbeat notifications; 0 turns them off.
    pub heartbeat_interval: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                DEFAULT_PORT,
            )],
            socket_file: None,
            socket_perms: DEFAULT_SOCKET_PERMS,
            socket_group: None,
            tokens: Tokens::default(),
            token_file: None,
            keystone: None,
            tls_cert_file: None,
            tls_key_file: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            client_timeout: DEFAULT_CLIENT_TIMEOUT,
            rate_limit: 0.0,
            busy_poll_us: DEFAULT_BUSY_POLL_US,
            state_dir: None,
            history_size: DEFAULT_HISTORY_SIZE,
            notification_buffer_size: DEFAULT_NOTIFICATION_BUFFER_SIZE,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            heartbeat_interval: 0.0,
        }
    }
}

/// A configuration error: the key path (e.g. `Listen`) and what is wrong.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Plugin rest> {}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        message: message.into(),
    }
}

impl Config {
    /// Parses the `<Plugin rest>` block (its children).
    pub fn from_item(block: &ConfigItem) -> Result<Config, ConfigError> {
        if !block.values.is_empty() && !block.key.eq_ignore_ascii_case("Plugin") {
            return Err(err(&block.key, "unexpected arguments"));
        }
        let mut cfg = Config::default();
        let mut listen = Vec::new();
        let mut perms_given = false;
        for item in &block.children {
            let key = item.key.as_str();
            let is = |k: &str| key.eq_ignore_ascii_case(k);
            if is("Listen") {
                listen.push(parse_listen(item)?);
            } else if is("SocketFile") {
                if cfg.socket_file.is_some() {
                    return Err(err(key, "appears more than once"));
                }
                cfg.socket_file = Some(absolute(item)?);
            } else if is("SocketPerms") {
                cfg.socket_perms = parse_perms(item)?;
                perms_given = true;
            } else if is("SocketGroup") {
                cfg.socket_group = Some(one_string(item)?.to_string());
            } else if is("StateDir") {
                let dir = PathBuf::from(one_string(item)?);
                if !dir.is_absolute() {
                    return Err(err(key, "must be an absolute path"));
                }
                cfg.state_dir = Some(dir);
            } else if is("HistorySize") {
                cfg.history_size = one_integer(item, 1, 1_000_000)? as usize;
            } else if is("NotificationBufferSize") {
                cfg.notification_buffer_size = one_integer(item, 1, 10_000_000)? as usize;
            } else if is("MaxRequestBytes") {
                cfg.max_request_bytes = one_integer(item, 1024, 1 << 30)? as usize;
            } else if is("HeartbeatInterval") {
                let n = one_number(item)?;
                if !(0.0..=86_400.0).contains(&n) {
                    return Err(err(key, "must be between 0 (off) and 86400 seconds"));
                }
                cfg.heartbeat_interval = n;
            } else if is("AuthToken") {
                cfg.tokens.0.push(parse_token(item)?);
            } else if is("TokenFile") {
                cfg.token_file = Some(absolute(item)?);
            } else if is("Keystone") {
                if cfg.keystone.is_some() {
                    return Err(err(key, "appears more than once"));
                }
                cfg.keystone = Some(parse_keystone(item)?);
            } else if is("TLSCertFile") {
                cfg.tls_cert_file = Some(absolute(item)?);
            } else if is("TLSKeyFile") {
                cfg.tls_key_file = Some(absolute(item)?);
            } else if is("MaxConnections") {
                cfg.max_connections = one_integer(item, 1, 1_000_000)? as usize;
            } else if is("ClientTimeout") {
                let n = one_number(item)?;
                if !(0.1..=3600.0).contains(&n) {
                    return Err(err(key, "must be between 0.1 and 3600 seconds"));
                }
                cfg.client_timeout = n;
            } else if is("RateLimit") {
                let n = one_number(item)?;
                if !(0.0..=1e9).contains(&n) {
                    return Err(err(key, "must be 0 (no limit) or requests per second"));
                }
                cfg.rate_limit = n;
            } else if is("BusyPoll") {
                cfg.busy_poll_us = one_integer(item, 0, 1000)?;
            } else {
                return Err(err(key, "unknown option"));
            }
            if !item.children.is_empty() && !is("Keystone") {
                return Err(err(key, "does not take a block"));
            }
        }
        // The default TCP address only when neither Listen nor SocketFile
        // says where to serve.
        if !listen.is_empty() || cfg.socket_file.is_some() {
            cfg.listen = listen;
        }
        if cfg.socket_file.is_none() {
            for (k, given) in [
                ("SocketPerms", perms_given),
                ("SocketGroup", cfg.socket_group.is_some()),
            ] {
                if given {
                    return Err(err(k, "needs SocketFile"));
                }
            }
        }
        match (&cfg.tls_cert_file, &cfg.tls_key_file) {
            (Some(_), None) => return Err(err("TLSKeyFile", "is required with TLSCertFile")),
            (None, Some(_)) => return Err(err("TLSCertFile", "is required with TLSKeyFile")),
            _ => {}
        }
        cfg.check_listen()?;
        Ok(cfg)
    }

    /// Whether any credential backend is configured.
    pub fn has_auth(&self) -> bool {
        !self.tokens.0.is_empty() || self.token_file.is_some() || self.keystone.is_some()
    }

    /// Without authentication every client is admin, so only loopback
    /// addresses may be served.
    fn check_listen(&self) -> Result<(), ConfigError> {
        for (i, a) in self.listen.iter().enumerate() {
            if self.listen[..i].contains(a) {
                return Err(err("Listen", format!("{a} is listed twice")));
            }
            if !a.ip().is_loopback() && !self.has_auth() {
                return Err(err(
                    "Listen",
                    format!(
                        "{} is not a loopback address, and no authentication \
                         (AuthToken, TokenFile, Keystone) is configured",
                        a.ip()
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn absolute(item: &ConfigItem) -> Result<PathBuf, ConfigError> {
    let p = PathBuf::from(one_string(item)?);
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(err(&item.key, "must be an absolute path"))
    }
}

/// `SocketPerms "0660"`: an octal mode as a string (a number would be read
/// as decimal by collectd's parser, which is not what anyone means).
fn parse_perms(item: &ConfigItem) -> Result<u32, ConfigError> {
    let s = match one_value(item)? {
        ConfigValue::String(s) => s.as_str(),
        v => {
            return Err(err(
                &item.key,
                format!("expected an octal mode as a string such as \"0660\", got {v}"),
            ))
        }
    };
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o777 && !s.is_empty() => Ok(m),
        _ => Err(err(
            &item.key,
            format!("expected an octal mode from \"0000\" to \"0777\", got {s:?}"),
        )),
    }
}

/// `AuthToken "role" "token"`.
fn parse_token(item: &ConfigItem) -> Result<(Role, String), ConfigError> {
    match item.values.as_slice() {
        [ConfigValue::String(role), ConfigValue::String(token)] => {
            let role = Role::parse(role).ok_or_else(|| {
                err(
                    &item.key,
                    format!("role must be reader or admin, got {role:?}"),
                )
            })?;
            check_token(token).map_err(|m| err(&item.key, m))?;
            Ok((role, token.clone()))
        }
        _ => Err(err(&item.key, "expected two strings: a role and a token")),
    }
}

/// A token: 8 to 4096 visible ASCII characters, no spaces.
pub fn check_token(token: &str) -> Result<(), String> {
    if !(8..=4096).contains(&token.len()) {
        return Err("a token must be 8 to 4096 characters".into());
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a token must be visible ASCII characters without spaces".into());
    }
    Ok(())
}

fn parse_keystone(block: &ConfigItem) -> Result<KeystoneConfig, ConfigError> {
    if !block.values.is_empty() {
        return Err(err("Keystone", "takes no arguments, only a block"));
    }
    let mut url = None;
    let mut username = None;
    let mut password = None;
    let mut project_name = None;
    let mut ks = KeystoneConfig {
        url: String::new(),
        username: String::new(),
        password: String::new(),
        project_name: String::new(),
        user_domain_name: "Default".into(),
        project_domain_name: "Default".into(),
        reader_role: "reader".into(),
        admin_role: "admin".into(),
        cache_ttl: 60.0,
        ca_cert_file: None,
    };
    for item in &block.children {
        let key = format!("Keystone {}", item.key);
        let path_err = |e: ConfigError| err(&key, e.message);
        let is = |k: &str| item.key.eq_ignore_ascii_case(k);
        if !item.children.is_empty() {
            return Err(err(&key, "does not take a block"));
        }
        if is("URL") {
            let u = one_string(item)
                .map_err(path_err)?
                .trim_end_matches('/')
                .to_string();
            crate::auth::keystone::Endpoint::parse(&u).map_err(|m| err(&key, m))?;
            url = Some(u);
        } else if is("Username") {
            username = Some(one_string(item).map_err(path_err)?.to_string());
        } else if is("Password") {
            password = Some(one_string(item).map_err(path_err)?.to_string());
        } else if is("ProjectName") {
            project_name = Some(one_string(item).map_err(path_err)?.to_string());
        } else if is("UserDomainName") {
            ks.user_domain_name = one_string(item).map_err(path_err)?.to_string();
        } else if is("ProjectDomainName") {
            ks.project_domain_name = one_string(item).map_err(path_err)?.to_string();
        } else if is("ReaderRole") {
            ks.reader_role = one_string(item).map_err(path_err)?.to_string();
        } else if is("AdminRole") {
            ks.admin_role = one_string(item).map_err(path_err)?.to_string();
        } else if is("CacheTTL") {
            let n = one_number(item).map_err(path_err)?;
            if !(0.0..=86_400.0).contains(&n) {
                return Err(err(&key, "must be 0 to 86400 seconds"));
            }
            ks.cache_ttl = n;
        } else if is("CACertFile") {
            ks.ca_cert_file = Some(absolute(item).map_err(path_err)?);
        } else {
            return Err(err(&key, "unknown option"));
        }
    }
    let need =
        |v: Option<String>, k: &str| v.ok_or_else(|| err(&format!("Keystone {k}"), "is required"));
    ks.url = need(url, "URL")?;
    ks.username = need(username, "Username")?;
    ks.password = need(password, "Password")?;
    ks.project_name = need(project_name, "ProjectName")?;
    Ok(ks)
}

fn one_value(item: &ConfigItem) -> Result<&ConfigValue, ConfigError> {
    match item.values.as_slice() {
        [v] => Ok(v),
        vs => Err(err(
            &item.key,
            format!("expected exactly one argument, got {}", vs.len()),
        )),
    }
}

fn one_string(item: &ConfigItem) -> Result<&str, ConfigError> {
    match one_value(item)? {
        ConfigValue::String(s) if !s.is_empty() => Ok(s),
        ConfigValue::String(_) => Err(err(&item.key, "must not be empty")),
        v => Err(err(&item.key, format!("expected a string, got {v}"))),
    }
}

fn one_number(item: &ConfigItem) -> Result<f64, ConfigError> {
    match one_value(item)? {
        ConfigValue::Number(n) => Ok(*n),
        v => Err(err(&item.key, format!("expected a number, got {v}"))),
    }
}

fn one_integer(item: &ConfigItem, min: u64, max: u64) -> Result<u64, ConfigError> {
    let n = one_number(item)?;
    if n.fract() != 0.0 || n < min as f64 || n > max as f64 {
        return Err(err(
            &item.key,
            format!("expected an integer from {min} to {max}, got {n}"),
        ));
    }
    Ok(n as u64)
}

/// `Listen "address" "port"` (port may also be a number). The address is an
/// IPv4 or IPv6 literal (brackets allowed) or `localhost`.
fn parse_listen(item: &ConfigItem) -> Result<SocketAddr, ConfigError> {
    let key = item.key.as_str();
    let (addr, port) = match item.values.as_slice() {
        [ConfigValue::String(a), p] => (a.as_str(), p),
        [ConfigValue::String(a)] => (a.as_str(), &ConfigValue::Number(DEFAULT_PORT.into())),
        [v, ..] if !matches!(v, ConfigValue::String(_)) => {
            return Err(err(key, format!("the address must be a string, got {v}")))
        }
        vs => {
            return Err(err(
                key,
                format!("expected an address and a port, got {} arguments", vs.len()),
            ))
        }
    };
    let port = match port {
        ConfigValue::Number(n) if n.fract() == 0.0 && (1.0..=65535.0).contains(n) => *n as u16,
        ConfigValue::String(s) => match s.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(err(key, format!("bad port {s:?}: expected 1-65535"))),
        },
        v => return Err(err(key, format!("bad port {v}: expected 1-65535"))),
    };
    let ip: IpAddr = if addr.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        let literal = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        literal.parse().map_err(|_| {
            err(
                key,
                format!("bad address {addr:?}: expected an IPv4 or IPv6 literal or localhost"),
            )
        })?
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> ConfigValue {
        ConfigValue::String(v.to_string())
    }
    fn n(v: f64) -> ConfigValue {
        ConfigValue::Number(v)
    }
    fn item(key: &str, values: Vec<ConfigValue>) -> ConfigItem {
        ConfigItem {
            key: key.into(),
            values,
            children: vec![],
        }
    }
    fn block(children: Vec<ConfigItem>) -> ConfigItem {
        ConfigItem {
            key: "Plugin".into(),
            values: vec![s("rest")],
            children,
        }
    }

    #[test]
    fn defaults() {
        let c = Config::from_item(&block(vec![])).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.listen, vec!["127.0.0.1:9196".parse().unwrap()]);
    }

    #[test]
    fn socket_file() {
        // Alone: no TCP listener.
        let c =
            Config::from_item(&block(vec![item("SocketFile", vec![s("/run/rest.sock")])])).unwrap();
        assert!(c.listen.is_empty());
        assert_eq!(c.socket_file, Some(PathBuf::from("/run/rest.sock")));
        assert_eq!(c.socket_perms, 0o660);
        // With Listen, perms and group; no auth needed (local only).
        let c = Config::from_item(&block(vec![
            item("Listen", vec![s("127.0.0.1"), s("8080")]),
            item("SocketFile", vec![s("/run/rest.sock")]),
            item("SocketPerms", vec![s("0600")]),
            item("SocketGroup", vec![s("adm")]),
        ]))
        .unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
        assert_eq!(c.socket_perms, 0o600);
        assert_eq!(c.socket_group.as_deref(), Some("adm"));
        for (items, key, says) in [
            (
                vec![item("SocketFile", vec![s("rest.sock")])],
                "SocketFile",
                "absolute",
            ),
            (
                vec![
                    item("SocketFile", vec![s("/a")]),
                    item("SocketFile", vec![s("/b")]),
                ],
                "SocketFile",
                "more than once",
            ),
            (
                vec![
                    item("SocketFile", vec![s("/a")]),
                    item("SocketPerms", vec![n(660.0)]),
                ],
                "SocketPerms",
                "as a string",
            ),
            (
                vec![
                    item("SocketFile", vec![s("/a")]),
                    item("SocketPerms", vec![s("0999")]),
                ],
                "SocketPerms",
                "octal",
            ),
            (
                vec![
                    item("SocketFile", vec![s("/a")]),
                    item("SocketPerms", vec![s("01777")]),
                ],
                "SocketPerms",
                "octal",
            ),
            (
                vec![item("SocketPerms", vec![s("0660")])],
                "SocketPerms",
                "needs SocketFile",
            ),
            (
                vec![item("SocketGroup", vec![s("adm")])],
                "SocketGroup",
                "needs SocketFile",
            ),
        ] {
            let e = error_of(items);
            assert_eq!(e.key, key);
            assert!(e.message.contains(says), "{key}: {}", e.message);
        }
    }

    #[test]
    fn full_block() {
        let c = Config::from_item(&block(vec![
            item("Listen", vec![s("127.0.0.1"), s("8080")]),
            item("listen", vec![s("::1"), n(8081.0)]),
            item("Listen", vec![s("[::1]"), s("8082")]),
            item("StateDir", vec![s("/var/lib/x")]),
            item("HistorySize", vec![n(10.0)]),
            item("NotificationBufferSize", vec![n(50.0)]),
            item("MaxRequestBytes", vec![n(4096.0)]),
            item("HeartbeatInterval", vec![n(30.0)]),
        ]))
        .unwrap();
        assert_eq!(
            c.listen,
            vec![
                "127.0.0.1:8080".parse().unwrap(),
                "[::1]:8081".parse().unwrap(),
                "[::1]:8082".parse().unwrap()
            ]
        );
        assert_eq!(c.state_dir, Some(PathBuf::from("/var/lib/x")));
        assert_eq!(c.history_size, 10);
        assert_eq!(c.notification_buffer_size, 50);
        assert_eq!(c.max_request_bytes, 4096);
        assert_eq!(c.heartbeat_interval, 30.0);
    }

    fn error_of(children: Vec<ConfigItem>) -> ConfigError {
        Config::from_item(&block(children)).unwrap_err()
    }

    #[test]
    fn errors_name_the_key() {
        let e = error_of(vec![item("Bogus", vec![n(1.0)])]);
        assert_eq!(e.key, "Bogus");
        assert!(e.to_string().contains("Bogus: unknown option"), "{e}");

        let e = error_of(vec![item("HistorySize", vec![s("ten")])]);
        assert_eq!(e.key, "HistorySize");
        assert!(e.message.contains("expected a number"));

        let e = error_of(vec![item("HistorySize", vec![n(1.5)])]);
        assert_eq!(e.key, "HistorySize");
        let e = error_of(vec![item("HistorySize", vec![n(0.0)])]);
        assert_eq!(e.key, "HistorySize");
        let e = error_of(vec![item("MaxRequestBytes", vec![n(10.0), n(2.0)])]);
        assert!(e.message.contains("exactly one"));

        let e = error_of(vec![item("Listen", vec![s("not-an-ip"), s("80")])]);
        assert_eq!(e.key, "Listen");
        assert!(e.message.contains("bad address"));
        let e = error_of(vec![item("Listen", vec![s("127.0.0.1"), s("99999")])]);
        assert!(e.message.contains("bad port"));
        let e = error_of(vec![item("Listen", vec![s("127.0.0.1"), n(0.0)])]);
        assert!(e.message.contains("bad port"));
        let e = error_of(vec![item("Listen", vec![n(1.0), n(2.0)])]);
        assert!(e.message.contains("must be a string"));
        let e = error_of(vec![item("StateDir", vec![s("relative/dir")])]);
        assert_eq!(e.key, "StateDir");
        let e = error_of(vec![item("HeartbeatInterval", vec![n(-1.0)])]);
        assert_eq!(e.key, "HeartbeatInterval");
    }

    #[test]
    fn loopback_only_without_auth() {
        let e = error_of(vec![item("Listen", vec![s("0.0.0.0"), s("9196")])]);
        assert_eq!(e.key, "Listen");
        assert!(e.message.contains("not a loopback"));
        let e = error_of(vec![item("Listen", vec![s("::"), s("9196")])]);
        assert!(e.message.contains("not a loopback"));
        let e = error_of(vec![
            item("Listen", vec![s("127.0.0.1"), s("9196")]),
            item("Listen", vec![s("localhost"), n(9196.0)]),
        ]);
        assert!(e.message.contains("twice"));
    }

    #[test]
    fn auth_and_tls_keys() {
        let mut ks = item("Keystone", vec![]);
        for (k, v) in [
            ("URL", "http://127.0.0.1:5000/v3/"),
            ("Username", "collectd"),
            ("Password", "pw"),
            ("ProjectName", "service"),
            ("AdminRole", "ops"),
        ] {
            ks.children.push(item(k, vec![s(v)]));
        }
        ks.children.push(item("CacheTTL", vec![n(30.0)]));
        let c = Config::from_item(&block(vec![
            item("AuthToken", vec![s("admin"), s("s3cret-admin")]),
            item("AuthToken", vec![s("reader"), s("s3cret-read")]),
            item("TokenFile", vec![s("/etc/collectd/rest.tokens")]),
            ks,
            item("TLSCertFile", vec![s("/c.pem")]),
            item("TLSKeyFile", vec![s("/k.pem")]),
            item("Listen", vec![s("0.0.0.0"), s("9196")]),
            item("MaxConnections", vec![n(10.0)]),
            item("ClientTimeout", vec![n(2.5)]),
            item("RateLimit", vec![n(100.0)]),
            item("BusyPoll", vec![n(0.0)]),
        ]))
        .unwrap();
        assert_eq!(
            c.tokens.0,
            [
                (Role::Admin, "s3cret-admin".to_string()),
                (Role::Reader, "s3cret-read".to_string())
            ]
        );
        let k = c.keystone.as_ref().unwrap();
        assert_eq!(k.url, "http://127.0.0.1:5000/v3", "trailing / dropped");
        assert_eq!(
            (k.admin_role.as_str(), k.reader_role.as_str()),
            ("ops", "reader")
        );
        assert_eq!(
            (k.user_domain_name.as_str(), k.cache_ttl),
            ("Default", 30.0)
        );
        assert!(c.has_auth(), "with auth, 0.0.0.0 is allowed");
        assert_eq!(
            (c.max_connections, c.client_timeout, c.rate_limit),
            (10, 2.5, 100.0)
        );
        assert_eq!(c.busy_poll_us, 0);
        assert_eq!(Config::default().busy_poll_us, DEFAULT_BUSY_POLL_US);
        // secrets never show in Debug
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret") && !dbg.contains("\"pw\""), "{dbg}");
    }

    #[test]
    fn bad_auth_and_tls_keys() {
        let e = error_of(vec![item("AuthToken", vec![s("root"), s("s3cret-admin")])]);
        assert!(e.message.contains("reader or admin"), "{e}");
        let e = error_of(vec![item("AuthToken", vec![s("admin"), s("short")])]);
        assert!(e.message.contains("8 to 4096"), "{e}");
        let e = error_of(vec![item("AuthToken", vec![s("admin"), s("has space!")])]);
        assert_eq!(e.key, "AuthToken");
        let e = error_of(vec![item("TokenFile", vec![s("relative")])]);
        assert_eq!(e.key, "TokenFile");
        let e = error_of(vec![item("TLSCertFile", vec![s("/c.pem")])]);
        assert_eq!(e.key, "TLSKeyFile");
        let mut ks = item("Keystone", vec![]);
        ks.children.push(item("URL", vec![s("ftp://x/v3")]));
        let e = error_of(vec![ks]);
        assert_eq!(e.key, "Keystone URL");
        let mut ks = item("Keystone", vec![]);
        ks.children
            .push(item("URL", vec![s("http://127.0.0.1:5000/v3")]));
        let e = error_of(vec![ks]);
        assert_eq!(e.key, "Keystone Username");
        assert!(e.message.contains("required"));
        let mut ks = item("Keystone", vec![]);
        ks.children.push(item("Bogus", vec![s("x")]));
        assert_eq!(error_of(vec![ks]).key, "Keystone Bogus");
    }

    #[test]
    fn blocks_where_none_belong() {
        let mut l = item("StateDir", vec![s("/x")]);
        l.children.push(item("X", vec![]));
        let e = error_of(vec![l]);
        assert!(e.message.contains("does not take a block"));
    }
}

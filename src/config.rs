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
/// StateDir when none is configured: under collectd's BaseDir.
pub const STATE_SUBDIR: &str = "rest";

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
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

/// Keys of the contract that a later version implements. They are refused
/// (not silently ignored): an operator who writes `AuthToken` must not get an
/// unauthenticated API by accident.
const NOT_YET_SUPPORTED: &[&str] = &[
    "AuthToken",
    "TokenFile",
    "Keystone",
    "TLSCertFile",
    "TLSKeyFile",
];

impl Config {
    /// Parses the `<Plugin rest>` block (its children).
    pub fn from_item(block: &ConfigItem) -> Result<Config, ConfigError> {
        if !block.values.is_empty() && !block.key.eq_ignore_ascii_case("Plugin") {
            return Err(err(&block.key, "unexpected arguments"));
        }
        let mut cfg = Config::default();
        let mut listen = Vec::new();
        for item in &block.children {
            let key = item.key.as_str();
            let is = |k: &str| key.eq_ignore_ascii_case(k);
            if is("Listen") {
                listen.push(parse_listen(item)?);
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
            } else if let Some(k) = NOT_YET_SUPPORTED.iter().find(|k| is(k)) {
                return Err(err(
                    k,
                    "is not supported by this version of the plugin yet; remove it \
                     (without it only loopback Listen addresses are accepted)",
                ));
            } else {
                return Err(err(key, "unknown option"));
            }
            if !item.children.is_empty() && !is("Keystone") {
                return Err(err(key, "does not take a block"));
            }
        }
        if !listen.is_empty() {
            cfg.listen = listen;
        }
        cfg.check_listen()?;
        Ok(cfg)
    }

    /// Without authentication every client is admin, so only loopback
    /// addresses may be served. (Authentication arrives in a later version.)
    fn check_listen(&self) -> Result<(), ConfigError> {
        for (i, a) in self.listen.iter().enumerate() {
            if self.listen[..i].contains(a) {
                return Err(err("Listen", format!("{a} is listed twice")));
            }
            if !a.ip().is_loopback() {
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
    fn later_keys_are_refused_not_ignored() {
        for k in ["AuthToken", "TokenFile", "TLSCertFile", "TLSKeyFile"] {
            let e = error_of(vec![item(k, vec![s("x"), s("y")])]);
            assert_eq!(e.key, k);
            assert!(e.message.contains("not supported"), "{e}");
        }
        let mut ks = item("Keystone", vec![]);
        ks.children
            .push(item("URL", vec![s("http://127.0.0.1:5000/v3")]));
        let e = error_of(vec![ks]);
        assert_eq!(e.key, "Keystone");
    }

    #[test]
    fn blocks_where_none_belong() {
        let mut l = item("StateDir", vec![s("/x")]);
        l.children.push(item("X", vec![]));
        let e = error_of(vec![l]);
        assert!(e.message.contains("does not take a block"));
    }
}

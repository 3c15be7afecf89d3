//! Black-box test support: a real `collectd -f` with the built plugin, on a
//! temporary config, plugin directory and free port; a guard that kills it
//! on drop; a small HTTP/1.1 client; and unixsock access (collectdctl and raw
//! commands) as a second opinion on what collectd holds.
//!
//! Nothing here mocks collectd. If collectd or the built plugin is missing,
//! the tests fail loudly with what to install.
#![allow(dead_code)]

pub mod certs;
pub mod keystone;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const COLLECTD: &str = "/usr/sbin/collectd";
pub const SYSTEM_PLUGIN_DIR: &str = "/usr/lib/collectd";
pub const TYPES_DB: &str = "/usr/share/collectd/types.db";
pub const HOSTNAME: &str = "testhost";

/// The plugin to test: `$REST_PLUGIN_SO` if set, else the one cargo built
/// beside this binary (`cargo test` leaves it in target/<profile>/deps;
/// `cargo build` copies it up to target/<profile>).
pub fn plugin_so() -> PathBuf {
    if let Some(p) = std::env::var_os("REST_PLUGIN_SO") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("binary in a directory");
    let candidates = [
        dir.join("librest.so"),
        dir.join("../deps/librest.so"),
        dir.join("../librest.so"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the plugin librest.so was not built next to {}; run `cargo test` \
                 (or `cargo build`) from the repository, or set REST_PLUGIN_SO",
                exe.display()
            )
        })
}

pub fn require_tools() {
    for (tool, package) in [
        (COLLECTD, "collectd-core"),
        ("/usr/bin/collectdctl", "collectd-utils"),
        (TYPES_DB, "collectd-core"),
    ] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: these tests need a real collectd (apt-get install {package})"
        );
    }
}

/// Polls `cond` every few milliseconds until it returns Some or `timeout`
/// passes; panics with `what` on timeout.
pub fn wait_for<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!(
        "collectd-rest-test-{}-{}-{tag}",
        std::process::id(),
        n
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// How to configure the collectd under test.
#[derive(Clone)]
pub struct Setup {
    /// System plugins to copy into the plugin dir and load (`LoadPlugin x`).
    pub load: Vec<String>,
    /// System plugins to copy without loading.
    pub copy: Vec<String>,
    /// Extra text for collectd.conf (plugin blocks, global options).
    pub extra: String,
    /// Lines inside `<Plugin rest>`, besides Listen.
    pub rest: String,
    /// Whether to add the Listen line for the chosen port.
    pub listen: bool,
    pub interval: f64,
    /// Environment variables for the collectd process.
    pub env: Vec<(String, String)>,
    /// Whether collectd.conf names the types database (TypesDB).
    pub types_db: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            load: Vec::new(),
            copy: Vec::new(),
            extra: String::new(),
            rest: String::new(),
            listen: true,
            interval: 1.0,
            env: Vec::new(),
            types_db: true,
        }
    }
}

impl Setup {
    pub fn load(mut self, plugins: &[&str]) -> Self {
        self.load.extend(plugins.iter().map(|p| p.to_string()));
        self
    }
    pub fn extra(mut self, text: &str) -> Self {
        self.extra.push_str(text);
        self.extra.push('\n');
        self
    }
    pub fn rest(mut self, text: &str) -> Self {
        self.rest.push_str(text);
        self.rest.push('\n');
        self
    }
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
    pub fn interval(mut self, s: f64) -> Self {
        self.interval = s;
        self
    }

    fn config(&self, dir: &Path, port: u16) -> String {
        let d = dir.display();
        let types_db = if self.types_db {
            format!("TypesDB \"{TYPES_DB}\"\n")
        } else {
            String::new()
        };
        let mut c = format!(
            "Hostname \"{HOSTNAME}\"\nFQDNLookup false\nBaseDir \"{d}\"\n\
             PIDFile \"{d}/collectd.pid\"\nPluginDir \"{d}/plugins\"\n\
             {types_db}Interval {}\nTimeout 2\n\
             LoadPlugin logfile\n<Plugin logfile>\n  LogLevel info\n  File \"{d}/collectd.log\"\n  \
             PrintSeverity true\n</Plugin>\n\
             LoadPlugin unixsock\n<Plugin unixsock>\n  SocketFile \"{d}/sock\"\n</Plugin>\n",
            self.interval
        );
        for p in &self.load {
            c.push_str(&format!("LoadPlugin {p}\n"));
        }
        c.push_str(&self.extra);
        c.push_str("LoadPlugin rest\n<Plugin rest>\n");
        if self.listen {
            c.push_str(&format!("  Listen \"127.0.0.1\" \"{port}\"\n"));
        }
        c.push_str(&self.rest);
        c.push_str("</Plugin>\n");
        c
    }

    /// Writes the directory: plugins (copied, not linked: collectd lstat()s
    /// them) and collectd.conf.
    fn prepare(&self, dir: &Path, port: u16) -> PathBuf {
        let plugins = dir.join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        std::fs::copy(plugin_so(), plugins.join("rest.so")).expect("copy rest.so");
        for p in ["logfile", "unixsock"]
            .iter()
            .map(|s| s.to_string())
            .chain(self.load.iter().cloned())
            .chain(self.copy.iter().cloned())
        {
            let src = Path::new(SYSTEM_PLUGIN_DIR).join(format!("{p}.so"));
            std::fs::copy(&src, plugins.join(format!("{p}.so")))
                .unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        }
        let conf = dir.join("collectd.conf");
        std::fs::write(&conf, self.config(dir, port)).unwrap();
        conf
    }
}

/// Runs an example config (the text of one of examples/*.conf, already
/// adapted by the caller) as examples/run.sh does: a private PluginDir with
/// the plugins it loads and a BaseDir around an Include of it. Does not wait.
pub fn launch_example(example: &str, port: u16, dir: PathBuf) -> Collectd {
    require_tools();
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for line in example.lines() {
        if let Some(p) = line.strip_prefix("LoadPlugin ") {
            let p = p.trim();
            let src = if p == "rest" {
                plugin_so()
            } else {
                Path::new(SYSTEM_PLUGIN_DIR).join(format!("{p}.so"))
            };
            std::fs::copy(&src, plugins.join(format!("{p}.so")))
                .unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        }
    }
    std::fs::write(dir.join("example.conf"), example).unwrap();
    let conf = dir.join("collectd.conf");
    std::fs::write(
        &conf,
        format!(
            "BaseDir \"{d}\"\nPIDFile \"{d}/collectd.pid\"\nPluginDir \"{d}/plugins\"\n\
             Include \"{d}/example.conf\"\n",
            d = dir.display()
        ),
    )
    .unwrap();
    Collectd::launch(Setup::default(), port, dir, &conf)
}

/// A running collectd; killed (SIGKILL) when dropped.
pub struct Collectd {
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
    pub setup: Setup,
}

impl Collectd {
    /// Starts collectd and waits until the API answers /v1/health.
    pub fn start(setup: Setup) -> Collectd {
        require_tools();
        for attempt in 0..3 {
            let c = Self::spawn(setup.clone(), free_port());
            match c.wait_ready() {
                Ok(()) => return c,
                // Another test took the port between our probe and collectd's
                // bind: try another one.
                Err(log) if log.contains("Address already in use") && attempt < 2 => continue,
                Err(log) => panic!("collectd did not become ready:\n{log}"),
            }
        }
        unreachable!()
    }

    /// Starts collectd without waiting (for tests of failing configs).
    pub fn spawn(setup: Setup, port: u16) -> Collectd {
        let dir = temp_dir("collectd");
        Self::spawn_in(setup, port, dir)
    }

    pub fn spawn_in(setup: Setup, port: u16, dir: PathBuf) -> Collectd {
        let conf = setup.prepare(&dir, port);
        Self::launch(setup, port, dir, &conf)
    }

    /// Starts `collectd -f -C conf` for a directory prepared by the caller.
    pub fn launch(setup: Setup, port: u16, dir: PathBuf, conf: &Path) -> Collectd {
        let child = Command::new(COLLECTD)
            .arg("-f")
            .arg("-C")
            .arg(conf)
            .envs(setup.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(dir.join("stdout.txt")).unwrap(),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("stderr.txt")).unwrap(),
            ))
            .spawn()
            .expect("start collectd");
        Collectd {
            dir,
            port,
            child: Some(child),
            setup,
        }
    }

    /// Restarts collectd on the same directory (state, config) and port.
    pub fn restart(mut self) -> Collectd {
        let status = self.terminate(Duration::from_secs(10));
        assert!(status.success(), "collectd exited with {status}");
        self.respawn()
    }

    /// Starts a new collectd on the same directory and port, once this one
    /// has exited (terminated or killed); waits until the API answers.
    pub fn respawn(mut self) -> Collectd {
        let dir = std::mem::take(&mut self.dir);
        let (setup, port) = (self.setup.clone(), self.port);
        drop(self);
        let c = Self::spawn_in(setup, port, dir);
        if let Err(log) = c.wait_ready() {
            panic!("collectd did not come back:\n{log}");
        }
        c
    }

    pub fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = try_request(self.port, "GET", "/v1/health", &[], b"") {
                if r.status == 200 {
                    return Ok(());
                }
            }
            if self.exited() || Instant::now() > deadline {
                return Err(self.all_output());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn exited(&self) -> bool {
        // try_wait needs &mut; check /proc instead to keep &self.
        let pid = self.pid();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.is_empty() || stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z'))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("collectd.log")).unwrap_or_default()
    }

    pub fn all_output(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!(
            "--- collectd.log\n{}--- stdout\n{}--- stderr\n{}",
            read("collectd.log"),
            read("stdout.txt"),
            read("stderr.txt")
        )
    }

    /// Waits until a line containing `needle` appears in collectd's log.
    pub fn wait_log(&self, needle: &str) -> String {
        wait_for(
            &format!("{needle:?} in collectd's log"),
            Duration::from_secs(15),
            || {
                self.log()
                    .lines()
                    .find(|l| l.contains(needle))
                    .map(String::from)
            },
        )
    }

    /// Sends SIGTERM and waits for the exit; panics after `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        self.wait_exit(timeout)
    }

    /// Waits for collectd to exit on its own (e.g. a refused config).
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("collectd running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("wait collectd") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "collectd did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn get(&self, path: &str) -> Response {
        request(self.port, "GET", path, &[], b"")
    }

    pub fn post_json(&self, path: &str, body: &str) -> Response {
        request(
            self.port,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        request(self.port, method, path, headers, body)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("sock")
    }

    /// Runs collectdctl against this collectd's unixsock.
    pub fn collectdctl(&self, args: &[&str]) -> String {
        let out = Command::new("collectdctl")
            .arg("-s")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("run collectdctl (apt-get install collectd-utils)");
        assert!(
            out.status.success(),
            "collectdctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The identifiers collectd's own cache holds (unixsock LISTVAL).
    pub fn listval(&self) -> Vec<String> {
        self.collectdctl(&["listval"])
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// PUTVAL through unixsock, then waits until the plugin holds the value
    /// (`id` without the host). One value at a time: collectd's write
    /// threads may take two values of one metric out of order, and its
    /// cache (and ours) then drops the older one.
    pub fn putval(&self, id: &str, opts: &str, time: u64, values: &str) {
        let full = format!("{HOSTNAME}/{id}");
        let r = self.unixsock(&format!("PUTVAL \"{full}\" {opts} {time}:{values}"));
        assert!(r[0].starts_with("0 "), "PUTVAL {full}: {r:?}");
        wait_for(
            &format!("{full} at {time}"),
            Duration::from_secs(10),
            || {
                let r = self.get(&format!("/v1/values/{full}"));
                (r.status == 200 && r.json()["time"] == time as f64).then_some(())
            },
        );
    }

    /// Sends one raw unixsock command; returns the status line and any
    /// following lines it announces.
    pub fn unixsock(&self, command: &str) -> Vec<String> {
        let mut s = UnixStream::connect(self.socket()).expect("connect unixsock");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(command.as_bytes()).unwrap();
        s.write_all(b"\n").unwrap();
        let mut r = BufReader::new(s);
        let mut first = String::new();
        r.read_line(&mut first).unwrap();
        let n: i64 = first
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let mut lines = vec![first.trim_end().to_string()];
        for _ in 0..n.max(0) {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            lines.push(l.trim_end().to_string());
        }
        lines
    }
}

impl Drop for Collectd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !self.dir.as_os_str().is_empty() && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a JSON error with this status and code.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.text());
        let j = self.json();
        assert_eq!(j["error"]["code"], code, "body: {}", self.text());
        assert!(
            j["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "an error needs a message: {}",
            self.text()
        );
        assert_eq!(self.header("content-type"), Some("application/json"));
    }
}

/// One HTTP/1.1 request on a fresh connection (Connection: close).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request(port, method, path, headers, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub fn try_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// One HTTP/1.1 request on a fresh connection to a Unix socket
/// (`SocketFile`), with Connection: close.
pub fn unix_request(sock: &Path, method: &str, path: &str) -> std::io::Result<Response> {
    let mut s = std::os::unix::net::UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("non-UTF-8 head"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&b[..line_end]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

/// Current UNIX time in whole seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

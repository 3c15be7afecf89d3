//! A real OpenStack Keystone (identity v3) on loopback for the tests of
//! token validation: PyPI's keystone in `<repo>/target/keystone-venv` (made
//! by tests/keystone-setup.sh), on sqlite with fernet tokens, served by uwsgi
//! on a free port from a fresh temporary directory. Nothing is mocked.
//!
//! `Keystone::start()` bootstraps an admin (roles admin, member, reader,
//! manager on project "admin") and waits until `GET /v3` answers; the
//! helpers below drive the v3 API as that admin. Dropping the guard stops
//! the server (SIGINT, then SIGKILL, only the pid started here).

use super::{free_port, temp_dir, try_request, wait_for, Response};
use serde_json::{json, Value};
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The password of the bootstrap user "admin".
pub const ADMIN_PASSWORD: &str = "keystone-admin-secret";
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PROJECT: &str = "admin";

const NOT_SET_UP: &str = "Keystone is not set up: run tests/keystone-setup.sh (or tests/run.sh)";

/// Where tests/keystone-setup.sh puts keystone and uwsgi.
pub fn venv() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/keystone-venv")
}

/// A running Keystone; stopped when dropped.
pub struct Keystone {
    /// The identity v3 endpoint, `http://127.0.0.1:PORT/v3`.
    pub url: String,
    pub port: u16,
    /// Holds keystone.conf, the sqlite database, the key repositories and
    /// the logs (kept when a test panics).
    pub dir: PathBuf,
    child: Option<Child>,
    admin: OnceLock<String>,
}

impl Keystone {
    /// Sets up a fresh Keystone and starts it; panics with its logs if it
    /// does not answer `GET /v3` within 60 s.
    pub fn start() -> Keystone {
        let venv = venv();
        for tool in ["bin/keystone-manage", "bin/uwsgi"] {
            assert!(
                venv.join(tool).is_file(),
                "{NOT_SET_UP} ({} is missing)",
                venv.join(tool).display()
            );
        }
        for attempt in 0..3 {
            let k = Self::spawn(&venv, free_port());
            match k.wait_ready(Duration::from_secs(60)) {
                Ok(()) => return k,
                // Another test took the port between our probe and uwsgi's
                // bind: start over (the port is in the bootstrap catalog).
                Err(log) if log.contains("Address already in use") && attempt < 2 => continue,
                Err(log) => panic!("Keystone did not become ready on {}:\n{log}", k.url),
            }
        }
        unreachable!()
    }

    fn spawn(venv: &Path, port: u16) -> Keystone {
        let dir = temp_dir("keystone");
        let url = format!("http://127.0.0.1:{port}/v3");
        let conf = dir.join("keystone.conf");
        let d = dir.display();
        std::fs::write(
            &conf,
            format!(
                "[DEFAULT]\nlog_dir = {d}\nlog_file = keystone.log\n\
                 [database]\nconnection = sqlite:///{d}/keystone.db\n\
                 [token]\nprovider = fernet\n\
                 [fernet_tokens]\nkey_repository = {d}/fernet-keys\n\
                 [credential]\nkey_repository = {d}/credential-keys\n\
                 [identity]\n# bcrypt's minimum cost: each password check stays fast\n\
                 password_hash_rounds = 4\n"
            ),
        )
        .unwrap();
        let (user, group) = (id("-un"), id("-gn"));
        let owner = ["--keystone-user", &user, "--keystone-group", &group];
        // The key repositories do not need the database: make all three at once.
        let first = [
            manage(venv, &dir, "db_sync", &[]),
            manage(venv, &dir, "fernet_setup", &owner),
            manage(venv, &dir, "credential_setup", &owner),
        ];
        for step in first {
            step.finish();
        }
        manage(
            venv,
            &dir,
            "bootstrap",
            &[
                "--bootstrap-username",
                ADMIN_USER,
                "--bootstrap-password",
                ADMIN_PASSWORD,
                "--bootstrap-project-name",
                ADMIN_PROJECT,
                "--bootstrap-region-id",
                "RegionOne",
                "--bootstrap-public-url",
                &url,
            ],
        )
        .finish();

        let child = Command::new(venv.join("bin/uwsgi"))
            .args(["--strict", "--master", "--die-on-term", "--need-app"])
            .args(["--processes", "1", "--threads", "2"])
            .arg("--http")
            .arg(format!("127.0.0.1:{port}"))
            // Without it the router closes every connection after the
            // response but says nothing (no `Connection: close`): a pooling
            // client may then send its next request on a dead connection.
            .arg("--http-keepalive")
            .arg("--virtualenv")
            .arg(venv)
            .args(["--module", "keystone.wsgi.api:application"])
            .env("OS_KEYSTONE_CONFIG_FILES", &conf)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(dir.join("uwsgi.stdout")).unwrap(),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("uwsgi.stderr")).unwrap(),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}/bin/uwsgi: {e}", venv.display()));
        Keystone {
            url,
            port,
            dir,
            child: Some(child),
            admin: OnceLock::new(),
        }
    }

    fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            if let Ok(r) = try_request(self.port, "GET", "/v3", &[], b"") {
                if r.status == 200 {
                    return Ok(());
                }
            }
            if self.exited() {
                return Err(format!("uwsgi exited\n{}", self.all_output()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no 200 from GET /v3 within {timeout:?}\n{}",
                    self.all_output()
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    fn exited(&self) -> bool {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        stat.is_empty() || stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z'))
    }

    /// keystone.log and uwsgi's output, for failure messages.
    pub fn all_output(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!(
            "--- {d}/keystone.log\n{}--- uwsgi stdout\n{}--- uwsgi stderr\n{}",
            read("keystone.log"),
            read("uwsgi.stdout"),
            read("uwsgi.stderr"),
            d = self.dir.display()
        )
    }

    /// Stops the server (to test "Keystone unreachable") and waits until
    /// its port refuses connections.
    pub fn stop(&mut self) {
        self.shutdown(Duration::from_secs(15));
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_for(
            &format!("port {} to close after stopping Keystone", self.port),
            Duration::from_secs(10),
            || match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => Some(()),
                _ => None,
            },
        );
    }

    /// SIGINT (uwsgi's immediate shutdown) to the master we started, then
    /// SIGKILL if it has not exited within `grace`; reaps it.
    fn shutdown(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + grace;
            while let Ok(None) = child.try_wait() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = child.wait();
    }

    /// One request to Keystone; panics if it cannot be sent.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Response {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut h = headers.to_vec();
        if !body.is_empty() {
            h.push(("Content-Type", "application/json"));
        }
        try_request(self.port, method, path, &h, body.as_bytes())
            .unwrap_or_else(|e| panic!("{method} {path} to Keystone: {e}\n{}", self.all_output()))
    }

    /// A request as the bootstrap admin that must answer `status`; returns
    /// the body as JSON (Null when empty).
    fn admin_call(&self, method: &str, path: &str, body: Option<&Value>, status: u16) -> Value {
        let token = self.admin.get_or_init(|| self.admin_token());
        let r = self.request(method, path, &[("X-Auth-Token", token)], body);
        assert_eq!(
            r.status,
            status,
            "{method} {path} to Keystone: {}",
            r.text()
        );
        if r.body.is_empty() {
            Value::Null
        } else {
            r.json()
        }
    }

    /// `POST /v3/auth/tokens` with a password; the raw answer.
    pub fn auth(&self, user: &str, password: &str, project: Option<&str>) -> Response {
        let mut body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}}}});
        if let Some(p) = project {
            body["auth"]["scope"] = json!({"project": {"name": p, "domain": {"id": "default"}}});
        }
        self.request("POST", "/v3/auth/tokens", &[], Some(&body))
    }

    /// A token of `user` scoped to `project` (both in domain default).
    pub fn token(&self, user: &str, password: &str, project: &str) -> String {
        subject_token(&self.auth(user, password, Some(project)), user)
    }

    /// A token of `user` with no scope (no project, no roles).
    pub fn unscoped_token(&self, user: &str, password: &str) -> String {
        subject_token(&self.auth(user, password, None), user)
    }

    /// A fresh token of the bootstrap admin, scoped to project "admin".
    pub fn admin_token(&self) -> String {
        self.token(ADMIN_USER, ADMIN_PASSWORD, ADMIN_PROJECT)
    }

    /// Creates an enabled user in domain default; returns its id.
    pub fn create_user(&self, name: &str, password: &str) -> String {
        let body = json!({"user": {"name": name, "password": password, "domain_id": "default", "enabled": true}});
        let j = self.admin_call("POST", "/v3/users", Some(&body), 201);
        id_of(&j["user"], "user")
    }

    /// The id of project `name` in domain default, created if missing.
    pub fn project_id(&self, name: &str) -> String {
        let j = self.admin_call(
            "GET",
            &format!("/v3/projects?domain_id=default&name={}", query(name)),
            None,
            200,
        );
        if let Some(p) = j["projects"].as_array().and_then(|a| a.first()) {
            return id_of(p, "project");
        }
        let body = json!({"project": {"name": name, "domain_id": "default", "enabled": true}});
        id_of(
            &self.admin_call("POST", "/v3/projects", Some(&body), 201)["project"],
            "project",
        )
    }

    /// The id of the global role `name`, created if missing (bootstrap makes
    /// admin, manager, member and reader).
    pub fn role_id(&self, name: &str) -> String {
        let j = self.admin_call("GET", &format!("/v3/roles?name={}", query(name)), None, 200);
        if let Some(r) = j["roles"].as_array().and_then(|a| a.first()) {
            return id_of(r, "role");
        }
        id_of(
            &self.admin_call(
                "POST",
                "/v3/roles",
                Some(&json!({"role": {"name": name}})),
                201,
            )["role"],
            "role",
        )
    }

    /// Gives `user_id` the role `role_name` on project `project_name`,
    /// creating the project and the role if they do not exist.
    pub fn grant(&self, user_id: &str, project_name: &str, role_name: &str) {
        let (project, role) = (self.project_id(project_name), self.role_id(role_name));
        self.admin_call(
            "PUT",
            &format!("/v3/projects/{project}/users/{user_id}/roles/{role}"),
            None,
            204,
        );
    }

    /// Revokes a token (`DELETE /v3/auth/tokens`).
    pub fn revoke(&self, token: &str) {
        let admin = self.admin.get_or_init(|| self.admin_token());
        let r = self.request(
            "DELETE",
            "/v3/auth/tokens",
            &[("X-Auth-Token", admin), ("X-Subject-Token", token)],
            None,
        );
        assert_eq!(r.status, 204, "revoke a token: {}", r.text());
    }

    /// The status of validating `token` as the admin, as a service would
    /// (`GET /v3/auth/tokens`): 200 valid, 404 invalid or revoked.
    pub fn validate(&self, token: &str) -> u16 {
        let admin = self.admin.get_or_init(|| self.admin_token());
        self.request(
            "GET",
            "/v3/auth/tokens",
            &[("X-Auth-Token", admin), ("X-Subject-Token", token)],
            None,
        )
        .status
    }
}

impl Drop for Keystone {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(5));
        if !self.dir.as_os_str().is_empty() && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A keystone-manage run in the background.
struct Manage {
    what: String,
    child: Child,
    log: PathBuf,
}

fn manage(venv: &Path, dir: &Path, command: &str, args: &[&str]) -> Manage {
    let log = dir.join(format!("manage-{command}.log"));
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(venv.join("bin/keystone-manage"))
        .arg("--config-file")
        .arg(dir.join("keystone.conf"))
        .arg(command)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap_or_else(|e| panic!("{NOT_SET_UP} (cannot run keystone-manage: {e})"));
    Manage {
        what: format!("keystone-manage {command} {}", args.join(" ")),
        child,
        log,
    }
}

impl Manage {
    fn finish(mut self) {
        let status = self.child.wait().expect("wait for keystone-manage");
        if !status.success() {
            let out = std::fs::read_to_string(&self.log).unwrap_or_default();
            let ks_log = std::fs::read_to_string(self.log.with_file_name("keystone.log"))
                .unwrap_or_default();
            panic!(
                "{} failed ({status}):\n{out}\n--- keystone.log\n{ks_log}",
                self.what
            );
        }
    }
}

fn subject_token(r: &Response, user: &str) -> String {
    assert_eq!(
        r.status,
        201,
        "password authentication of {user:?}: {}",
        r.text()
    );
    r.header("X-Subject-Token")
        .unwrap_or_else(|| panic!("no X-Subject-Token in Keystone's answer: {:?}", r.headers))
        .to_string()
}

fn id_of(v: &Value, what: &str) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no {what} id in {v}"))
        .to_string()
}

/// Percent-encodes a query parameter value.
fn query(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `id -un` / `id -gn`: the owner keystone-manage gives the key repositories.
fn id(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().expect("run id");
    assert!(out.status.success(), "id {flag} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

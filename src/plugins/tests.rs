//! The plugin operations against a fake collectd: states, the order of the
//! calls into collectd, refusals, and what StateDir keeps.

use super::*;
use crate::control::tests::FakeCollectd;

struct Fixture {
    dir: PathBuf,
    fake: FakeCollectd,
}

impl Fixture {
    /// A PluginDir holding `installed`, of which collectd.conf loaded `loaded`.
    fn new(tag: &str, installed: &[&str], loaded: &[&str]) -> Fixture {
        let dir = std::env::temp_dir().join(format!("rest-plugins-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("plugins")).unwrap();
        std::fs::create_dir_all(dir.join("state")).unwrap();
        for p in installed {
            std::fs::write(dir.join(format!("plugins/{p}.so")), b"").unwrap();
        }
        Fixture {
            dir,
            fake: FakeCollectd::with_plugins(installed, loaded),
        }
    }

    /// A manager as at a fresh start of collectd (reads StateDir).
    fn manager(&self) -> Manager {
        let m = Manager::new(Some(self.dir.join("plugins")), &self.dir.join("state"));
        m.startup(&self.fake);
        m
    }

    /// collectd restarted: only collectd.conf's plugins are loaded again.
    fn restart_collectd(&self, config_loaded: &[&str]) {
        *self.fake.loaded.lock() = config_loaded.iter().map(|s| s.to_string()).collect();
        *self.fake.running.lock() = self.fake.loaded.lock().clone();
        self.fake.take_calls();
    }

    fn persisted(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.join("state/plugins.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn state_of(m: &Manager, name: &str) -> PluginState {
    m.get(name).unwrap().state
}

#[test]
fn inventory_from_plugin_dir_and_collectd() {
    let f = Fixture::new(
        "inventory",
        &["cpu", "memory", "rest", "csv"],
        &["cpu", "rest"],
    );
    let m = f.manager();
    let all = m.list(None);
    let states: Vec<_> = all
        .iter()
        .map(|v| (v.name.as_str(), v.state, v.origin))
        .collect();
    assert_eq!(
        states,
        [
            ("cpu", PluginState::Enabled, Some(Origin::Config)),
            ("csv", PluginState::Available, None),
            ("memory", PluginState::Available, None),
            ("rest", PluginState::Enabled, Some(Origin::Config)),
        ]
    );
    assert_eq!(m.list(Some(PluginState::Available)).len(), 2);
    assert!(matches!(m.get("nope"), Err(OpError::NotFound(_))));
}

#[test]
fn load_then_disable_enable_restart_delete() {
    let f = Fixture::new("cycle", &["cpu", "memory", "rest"], &["rest"]);
    let m = f.manager();
    f.fake.take_calls();

    let v = m
        .put(
            &f.fake,
            "memory",
            PutRequest {
                interval: Some(2.0),
                ..Default::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(
        (v.state, v.origin, v.interval),
        (PluginState::Enabled, Some(Origin::Api), Some(2.0))
    );
    assert_eq!(
        f.fake.take_calls(),
        ["load memory [Number(2.0)]", "init memory", "wait"]
    );
    assert_eq!(
        f.persisted()["plugins"]["memory"],
        serde_json::json!({"origin": "api", "enabled": true, "interval": 2.0})
    );
    // values read before init were held, and are let through after
    assert!(!m.hold.should_drop("memory", now_cdtime() + (1 << 30)));

    let v = m.disable(&f.fake, "memory").unwrap();
    assert_eq!(v.state, PluginState::Disabled);
    assert_eq!(f.fake.take_calls(), ["unregister memory"]);
    assert_eq!(f.persisted()["plugins"]["memory"]["enabled"], false);
    // disabling twice changes nothing
    assert_eq!(
        m.disable(&f.fake, "memory").unwrap().state,
        PluginState::Disabled
    );
    assert!(f.fake.take_calls().is_empty());

    let v = m.enable(&f.fake, "memory", None).unwrap();
    assert_eq!(v.state, PluginState::Enabled);
    // loaded already: register again (with its interval) and init, no load
    assert_eq!(
        f.fake.take_calls(),
        ["wait", "register memory Some(2.0)", "init memory", "wait"]
    );

    let v = m.restart(&f.fake, "memory", None).unwrap();
    assert_eq!(v.state, PluginState::Enabled);
    assert_eq!(
        f.fake.take_calls(),
        [
            "unregister memory",
            "wait",
            "register memory Some(2.0)",
            "init memory",
            "wait"
        ]
    );

    m.delete(&f.fake, "memory").unwrap();
    assert_eq!(state_of(&m, "memory"), PluginState::Available);
    assert_eq!(f.fake.take_calls(), ["unregister memory"]);
    assert!(f.persisted()["plugins"].get("memory").is_none());
    assert!(matches!(
        m.restart(&f.fake, "memory", None),
        Err(OpError::Conflict(_))
    ));
}

#[test]
fn reconfigure_applies_config_between_stop_and_start() {
    let f = Fixture::new("reconf", &["interface", "rest"], &["interface", "rest"]);
    let m = f.manager();
    f.fake.take_calls();
    let req = PutRequest {
        config: Some("Interface \"lo\"".into()),
        ..Default::default()
    };
    let v = m
        .put(&f.fake, "interface", req.clone(), Some(10.0))
        .unwrap();
    assert_eq!(
        v.origin,
        Some(Origin::Config),
        "collectd.conf's plugin stays so"
    );
    assert_eq!(v.config.as_deref(), Some("Interface \"lo\""));
    assert_eq!(
        f.fake.take_calls(),
        [
            "unregister interface",
            "wait",
            "config interface 1",
            // the interval its values had (collectd.conf may have set one)
            "register interface Some(10.0)",
            "init interface",
            "wait"
        ]
    );
    // the same PUT again is a no-op: no second application (list options
    // would accumulate in the plugin)
    m.put(&f.fake, "interface", req, Some(10.0)).unwrap();
    assert!(f.fake.take_calls().is_empty());
    assert_eq!(
        f.persisted()["plugins"]["interface"],
        serde_json::json!({"origin": "config", "enabled": true, "config": "Interface \"lo\""})
    );
}

#[test]
fn failed_init_unregisters_and_reports() {
    let f = Fixture::new("fail", &["ping", "rest"], &["rest"]);
    f.fake.fail_init.lock().insert("ping".into());
    let m = f.manager();
    f.fake.take_calls();
    let e = m
        .put(&f.fake, "ping", PutRequest::default(), None)
        .unwrap_err();
    let OpError::Failed(err) = e else {
        panic!("{e:?}")
    };
    assert!(err.message.contains("init of ping failed"));
    assert_eq!(state_of(&m, "ping"), PluginState::Failed);
    assert_eq!(m.get("ping").unwrap().error, Some(err));
    assert_eq!(
        f.fake.take_calls(),
        ["load ping ", "init ping", "discard ping"]
    );
    assert!(!f.fake.running.lock().contains("ping"));
    // nothing persisted for a refused change
    assert!(!f.dir.join("state/plugins.json").exists());
    // a later success clears the error
    f.fake.fail_init.lock().clear();
    let v = m.put(&f.fake, "ping", PutRequest::default(), None).unwrap();
    assert_eq!((v.state, v.error), (PluginState::Enabled, None));
}

/// A change collectd refused is not what the plugin runs with afterwards:
/// neither the answers nor StateDir keep it, and enabling the plugin again
/// runs it with the settings of its last accepted change.
#[test]
fn a_refused_change_is_not_kept() {
    let f = Fixture::new("refused", &["interface", "rest"], &["interface", "rest"]);
    let m = f.manager();
    let accepted = PutRequest {
        config: Some("Interface \"lo\"".into()),
        interval: Some(5.0),
        ..Default::default()
    };
    m.put(&f.fake, "interface", accepted, None).unwrap();
    f.fake.fail_init.lock().insert("interface".into());
    let refused = PutRequest {
        config: Some("Interface \"eth0\"".into()),
        interval: Some(7.0),
        ..Default::default()
    };
    let e = m.put(&f.fake, "interface", refused, None).unwrap_err();
    assert!(matches!(e, OpError::Failed(_)), "{e:?}");
    let v = m.get("interface").unwrap();
    assert_eq!(v.state, PluginState::Failed);
    assert!(v.error.is_some());
    assert_eq!(
        (v.config.as_deref(), v.interval),
        (Some("Interface \"lo\""), Some(5.0)),
        "the last accepted settings, not the refused ones"
    );
    f.fake.fail_init.lock().clear();
    f.fake.take_calls();
    let v = m.enable(&f.fake, "interface", None).unwrap();
    assert_eq!(
        (v.state, v.config.as_deref(), v.interval),
        (PluginState::Enabled, Some("Interface \"lo\""), Some(5.0))
    );
    assert_eq!(
        f.fake.take_calls(),
        [
            "wait",
            "register interface Some(5.0)",
            "init interface",
            "wait"
        ]
    );
    assert_eq!(
        f.persisted()["plugins"]["interface"],
        serde_json::json!({"origin": "config", "enabled": true, "interval": 5.0,
                           "config": "Interface \"lo\""})
    );
    // Without an accepted change before, nothing set through the API stays.
    f.fake.fail_init.lock().insert("interface".into());
    m.delete(&f.fake, "interface").unwrap();
    let refused = PutRequest {
        config: Some("Interface \"eth0\"".into()),
        ..Default::default()
    };
    assert!(m.put(&f.fake, "interface", refused, None).is_err());
    let v = m.get("interface").unwrap();
    assert_eq!((v.config, v.interval), (None, None));
}

#[test]
fn refusals() {
    let f = Fixture::new("refuse", &["cpu", "rest"], &["cpu", "rest"]);
    let m = f.manager();
    f.fake.take_calls();
    for r in [
        m.disable(&f.fake, "rest").map(|_| ()),
        m.restart(&f.fake, "rest", None).map(|_| ()),
        m.delete(&f.fake, "rest"),
        m.put(&f.fake, "rest", PutRequest::default(), None)
            .map(|_| ()),
    ] {
        assert!(matches!(r, Err(OpError::Conflict(_))), "{r:?}");
    }
    assert!(matches!(
        m.disable(&f.fake, "../cpu"),
        Err(OpError::Invalid("invalid_name", _))
    ));
    assert!(matches!(
        m.disable(&f.fake, "a.b"),
        Err(OpError::Invalid(..))
    ));
    assert!(matches!(
        m.disable(&f.fake, &"a".repeat(65)),
        Err(OpError::Invalid(..))
    ));
    assert!(matches!(
        m.enable(&f.fake, "nosuch", None),
        Err(OpError::NotFound(_))
    ));
    let bad = |config: &str| {
        m.put(
            &f.fake,
            "cpu",
            PutRequest {
                config: Some(config.into()),
                ..Default::default()
            },
            None,
        )
    };
    for config in [
        "</Plugin>\nWriteThreads 8\n<Plugin \"cpu\">",
        "</Plugin>\n<Plugin \"memory\">",
        "Include \"/etc/passwd\"",
        "<Deep>\nLoadPlugin \"memory\"\n</Deep>",
        "<Unclosed>",
    ] {
        assert!(
            matches!(bad(config), Err(OpError::Invalid("invalid_config", _))),
            "{config}"
        );
    }
    // From 10 ms (a shorter interval can keep a read thread busy without
    // pause) to a day.
    for interval in [
        0.0,
        -1.0,
        f64::NAN,
        1e9,
        1e-300,
        1.0 / (1u64 << 30) as f64,
        MIN_INTERVAL * 0.999,
        86_400.5,
    ] {
        let r = m.put(
            &f.fake,
            "cpu",
            PutRequest {
                interval: Some(interval),
                ..Default::default()
            },
            None,
        );
        assert!(matches!(r, Err(OpError::Invalid(..))), "{interval}");
    }
    assert!(f.fake.take_calls().is_empty(), "nothing reached collectd");
    assert!(m.disable(&f.fake, "cpu").is_ok());
    // an available plugin cannot be disabled
    let f2 = Fixture::new("refuse2", &["csv"], &[]);
    let m2 = f2.manager();
    assert!(matches!(
        m2.disable(&f2.fake, "csv"),
        Err(OpError::Conflict(_))
    ));
}

#[test]
fn persisted_changes_come_back_after_a_restart() {
    let f = Fixture::new(
        "persist",
        &["cpu", "memory", "load", "csv", "rest"],
        &["cpu", "load", "rest"],
    );
    let m = f.manager();
    // an API plugin with config and interval, a config plugin disabled, one
    // deleted, an API plugin kept disabled
    m.put(
        &f.fake,
        "memory",
        PutRequest {
            interval: Some(3.0),
            config: Some("ValuesPercentage true".into()),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    m.disable(&f.fake, "cpu").unwrap();
    m.delete(&f.fake, "load").unwrap();
    m.put(
        &f.fake,
        "csv",
        PutRequest {
            enabled: Some(false),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(state_of(&m, "csv"), PluginState::Disabled);

    f.restart_collectd(&["cpu", "load", "rest"]);
    let m = Manager::new(Some(f.dir.join("plugins")), &f.dir.join("state"));
    // before collectd has started, values of cpu and load are already held
    assert!(m.hold.should_drop("cpu", 1));
    assert!(m.hold.should_drop("load", 1));
    assert!(!m.hold.should_drop("memory", 1));
    m.startup(&f.fake);
    let calls = f.fake.take_calls();
    assert!(calls.contains(&"unregister cpu".to_string()), "{calls:?}");
    assert!(calls.contains(&"unregister load".to_string()), "{calls:?}");
    assert!(
        calls.contains(&"load memory [Number(3.0)]".to_string()),
        "{calls:?}"
    );
    assert!(calls.contains(&"config memory 1".to_string()), "{calls:?}");
    assert!(calls.contains(&"init memory".to_string()), "{calls:?}");
    assert!(!calls.iter().any(|c| c.contains("csv")), "{calls:?}");
    let v: Vec<_> = m
        .list(None)
        .into_iter()
        .map(|v| (v.name, v.state, v.origin))
        .collect();
    assert_eq!(
        v,
        [
            ("cpu".into(), PluginState::Disabled, Some(Origin::Config)),
            ("csv".into(), PluginState::Disabled, Some(Origin::Api)),
            ("load".into(), PluginState::Available, None),
            ("memory".into(), PluginState::Enabled, Some(Origin::Api)),
            ("rest".into(), PluginState::Enabled, Some(Origin::Config)),
        ]
    );
    assert!(!m.hold.should_drop("cpu", 1), "held only until disabled");
    // enabling the deleted config plugin brings it back as collectd.conf's
    let v = m.enable(&f.fake, "load", Some(10.0)).unwrap();
    assert_eq!(
        (v.state, v.origin),
        (PluginState::Enabled, Some(Origin::Config))
    );
}

#[test]
fn corrupt_state_file_is_set_aside() {
    let f = Fixture::new("corrupt", &["cpu"], &["cpu"]);
    std::fs::write(f.dir.join("state/plugins.json"), b"{not json").unwrap();
    let m = f.manager();
    assert_eq!(state_of(&m, "cpu"), PluginState::Enabled);
    assert!(f.dir.join("state/plugins.json.corrupt").exists());
}

#[test]
fn instance_named_plugins_are_not_stopped_at_runtime() {
    let f = Fixture::new(
        "instance-named",
        &["write_http", "python", "cpu"],
        &["write_http", "python"],
    );
    let m = f.manager();
    f.fake.take_calls();
    for name in ["write_http", "python"] {
        for r in [
            m.disable(&f.fake, name).map(|_| ()),
            m.restart(&f.fake, name, None).map(|_| ()),
            m.delete(&f.fake, name),
            m.put(
                &f.fake,
                name,
                PutRequest {
                    enabled: Some(false),
                    ..Default::default()
                },
                None,
            )
            .map(|_| ()),
            m.put(
                &f.fake,
                name,
                PutRequest {
                    interval: Some(5.0),
                    ..Default::default()
                },
                None,
            )
            .map(|_| ()),
        ] {
            let Err(OpError::Conflict(msg)) = r else {
                panic!("{name}: {r:?}")
            };
            assert!(msg.contains("collectd.conf"), "{msg}");
        }
        assert_eq!(state_of(&m, name), PluginState::Enabled);
    }
    assert!(f.fake.take_calls().is_empty(), "nothing reached collectd");
    // Enabling one that is not running is fine.
    assert!(m.enable(&f.fake, "cpu", None).is_ok());
}

#[test]
fn busy_write_threads_refuse_the_stop_and_change_nothing() {
    let f = Fixture::new("busy-writers", &["csv"], &["csv"]);
    let m = f.manager();
    f.fake.busy_writers.lock().insert("csv".into());
    let before = std::fs::read(f.dir.join("state/plugins.json")).ok();
    for r in [
        m.disable(&f.fake, "csv").map(|_| ()),
        m.restart(&f.fake, "csv", None).map(|_| ()),
        m.delete(&f.fake, "csv"),
        m.put(
            &f.fake,
            "csv",
            PutRequest {
                interval: Some(5.0),
                ..Default::default()
            },
            None,
        )
        .map(|_| ()),
    ] {
        assert!(matches!(r, Err(OpError::Conflict(_))), "{r:?}");
    }
    assert_eq!(state_of(&m, "csv"), PluginState::Enabled);
    assert!(f.fake.running.lock().contains("csv"));
    assert_eq!(std::fs::read(f.dir.join("state/plugins.json")).ok(), before);
    f.fake.busy_writers.lock().clear();
    assert_eq!(
        m.disable(&f.fake, "csv").unwrap().state,
        PluginState::Disabled
    );
}

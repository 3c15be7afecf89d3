//! Generates the collectd bindings from the installed collectd headers.
//!
//! The headers come from Debian's `collectd-dev` (under /usr/include/collectd)
//! or from `$COLLECTD_INCLUDE_DIR` for packaging builds. We never carry a copy
//! of them: the bindings always describe the collectd we build against.

use std::env;
use std::path::{Path, PathBuf};
use std::process::exit;

const DEFAULT_ROOT: &str = "/usr/include";

fn fail(msg: &str) -> ! {
    eprintln!("\ncollectd-rest build error: {msg}\n");
    exit(1);
}

/// Finds the include root: the directory holding `collectd/core/daemon/plugin.h`.
/// `COLLECTD_INCLUDE_DIR` may name that root or the `collectd` directory below it.
fn include_root() -> PathBuf {
    let (dir, from_env) = match env::var_os("COLLECTD_INCLUDE_DIR") {
        Some(d) => (PathBuf::from(d), true),
        None => (PathBuf::from(DEFAULT_ROOT), false),
    };
    let marker = Path::new("collectd/core/daemon/plugin.h");
    if dir.join(marker).is_file() {
        return dir;
    }
    if dir.join("core/daemon/plugin.h").is_file() {
        if let Some(parent) = dir.parent() {
            return parent.to_path_buf();
        }
    }
    if from_env {
        fail(&format!(
            "COLLECTD_INCLUDE_DIR={} holds no collectd/core/daemon/plugin.h. \
             Point it at the directory that contains collectd/core/daemon/plugin.h.",
            dir.display()
        ));
    }
    fail(
        "collectd's headers were not found (/usr/include/collectd/core/daemon/plugin.h). \
         Install them with: apt-get install collectd-dev \
         (or set COLLECTD_INCLUDE_DIR to where they are).",
    );
}

/// The version string of the collectd the headers belong to (config.h).
fn headers_version(root: &Path) -> String {
    let config_h = root.join("collectd/core/config.h");
    let text = std::fs::read_to_string(&config_h).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("#define PACKAGE_VERSION "))
        .map(|v| v.trim().trim_matches('"').to_string())
        .next()
        .unwrap_or_else(|| "unknown".to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=collectd-headers/wrapper.h");
    println!("cargo:rerun-if-env-changed=COLLECTD_INCLUDE_DIR");

    let root = include_root();
    println!(
        "cargo:rerun-if-changed={}",
        root.join("collectd/core/daemon/plugin.h").display()
    );
    println!(
        "cargo:rustc-env=COLLECTD_HEADERS_VERSION={}",
        headers_version(&root)
    );

    let include_args = [
        root.clone(),
        root.join("collectd/core"),
        root.join("collectd"),
    ]
    .iter()
    .map(|p| format!("-I{}", p.display()))
    .collect::<Vec<_>>();

    let builder = bindgen::Builder::default()
        .header("collectd-headers/wrapper.h")
        .clang_args(&include_args)
        // Functions the daemon exports that we call.
        .allowlist_function("plugin_.*")
        .allowlist_function("cf_.*")
        .allowlist_function("global_option_get")
        .allowlist_function("meta_data_(toc|type|get_.*|create|destroy|add_.*)")
        .allowlist_function("uc_get_rate_by_name")
        .allowlist_function("fc_.*")
        .allowlist_function("oconfig_parse_file|oconfig_free")
        .allowlist_var("hostname_g")
        .allowlist_var("interval_g")
        .allowlist_var("timeout_g")
        // Types and constants.
        .allowlist_type("value_list_t|data_set_t|notification_t|oconfig_item_t|plugin_ctx_t|user_data_t|cdtime_t|match_proc_t")
        .allowlist_var("DS_TYPE_.*|NOTIF_.*|LOG_.*|MD_TYPE_.*|OCONFIG_TYPE_.*|DATA_MAX_NAME_LEN|FC_.*")
        .blocklist_function("plugin_dispatch_multivalue")
        .layout_tests(false)
        .derive_default(false)
        .generate_comments(false);

    // bindgen loads libclang at run time and panics when it is missing; turn
    // that into a sentence that says what to install.
    let generated =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || builder.generate()));
    let bindings = match generated {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => fail(&format!(
            "bindgen could not parse collectd's headers under {}: {e}",
            root.display()
        )),
        Err(_) => fail(
            "bindgen needs libclang. Install it with: apt-get install libclang-dev \
             (or set LIBCLANG_PATH to the directory holding libclang.so).",
        ),
    };
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings
        .write_to_file(out.join("collectd_bindings.rs"))
        .unwrap_or_else(|e| fail(&format!("cannot write the bindings: {e}")));
}

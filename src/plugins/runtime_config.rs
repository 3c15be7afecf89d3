//! The configuration text an API client sends for a plugin (the lines inside
//! `<Plugin name>`), checked before collectd sees it, and the runtime files
//! handed to collectd's cf_read.
//!
//! The text is parsed by collectd's own parser first (the caller does that);
//! `check` then inspects the tree: exactly the expected top-level items, and
//! no `Include` or `LoadPlugin` anywhere (cf_read would follow an Include at
//! any depth, and a LoadPlugin would load another plugin).

use crate::model::{ConfigItem, ConfigValue};

/// The largest configuration text accepted, in bytes.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// Validates the raw text before it is parsed: size, no NUL.
pub fn check_text(text: &str) -> Result<(), String> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(format!("config is longer than {MAX_CONFIG_BYTES} bytes"));
    }
    if text.contains('\0') {
        return Err("config contains a NUL character".into());
    }
    Ok(())
}

/// A quoted config string: backslashes and quotes escaped.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The file that validates the text: the text inside the plugin's block.
/// Parsing it must give exactly one top-level item, that block.
pub fn block_file(plugin: &str, config: &str) -> String {
    format!("<Plugin {}>\n{}\n</Plugin>\n", quote(plugin), config)
}

/// The runtime file for cf_read. `TypesDB "/dev/null"` first: when the
/// daemon's own config has no TypesDB line, every cf_read would otherwise
/// reload types.db, replacing data sets that write threads read without a
/// lock. Reading /dev/null adds no type.
///
/// With `load`, a `<LoadPlugin>` block (and the Interval) comes first; with
/// `config`, the plugin's block follows.
pub fn runtime_file(
    plugin: &str,
    load: bool,
    interval: Option<f64>,
    config: Option<&str>,
) -> String {
    let mut f = String::from("TypesDB \"/dev/null\"\n");
    if load {
        f.push_str(&format!("<LoadPlugin {}>\n", quote(plugin)));
        if let Some(i) = interval {
            f.push_str(&format!("  Interval {i}\n"));
        }
        f.push_str("</LoadPlugin>\n");
    }
    if let Some(c) = config {
        f.push_str(&block_file(plugin, c));
    }
    f
}

/// Checks the parse tree of `block_file(plugin, text)`.
pub fn check_tree(plugin: &str, root: &ConfigItem) -> Result<(), String> {
    let block = match root.children.as_slice() {
        [b] => b,
        [] => return Err("config is empty".into()),
        _ => {
            return Err(format!(
                "config must only hold the lines inside <Plugin {plugin}>: \
                 it closes the block and adds other items"
            ))
        }
    };
    let names_plugin = block.key.eq_ignore_ascii_case("Plugin")
        && matches!(block.values.as_slice(), [ConfigValue::String(n)] if n == plugin);
    if !names_plugin {
        return Err(format!(
            "config must only hold the lines inside <Plugin {plugin}>"
        ));
    }
    forbid_anywhere(&block.children)
}

fn forbid_anywhere(items: &[ConfigItem]) -> Result<(), String> {
    for item in items {
        for bad in ["Include", "LoadPlugin"] {
            if item.key.eq_ignore_ascii_case(bad) {
                return Err(format!("config may not contain {bad}"));
            }
        }
        forbid_anywhere(&item.children)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, values: Vec<ConfigValue>, children: Vec<ConfigItem>) -> ConfigItem {
        ConfigItem {
            key: key.into(),
            values,
            children,
        }
    }
    fn s(v: &str) -> ConfigValue {
        ConfigValue::String(v.into())
    }
    fn root(children: Vec<ConfigItem>) -> ConfigItem {
        item("", vec![], children)
    }

    #[test]
    fn accepts_the_plugins_own_block() {
        let t = root(vec![item(
            "Plugin",
            vec![s("interface")],
            vec![
                item("Interface", vec![s("lo")], vec![]),
                item("Nested", vec![], vec![item("X", vec![s("y")], vec![])]),
            ],
        )]);
        assert_eq!(check_tree("interface", &t), Ok(()));
        // an empty block is fine: configure nothing
        let t = root(vec![item("Plugin", vec![s("cpu")], vec![])]);
        assert_eq!(check_tree("cpu", &t), Ok(()));
    }

    #[test]
    fn refuses_escapes_from_the_block() {
        // `</Plugin> WriteThreads 8 <Plugin cpu>` adds top-level items
        let t = root(vec![
            item("Plugin", vec![s("cpu")], vec![]),
            item("WriteThreads", vec![ConfigValue::Number(8.0)], vec![]),
            item("Plugin", vec![s("cpu")], vec![]),
        ]);
        assert!(check_tree("cpu", &t)
            .unwrap_err()
            .contains("closes the block"));
        let t = root(vec![item("Plugin", vec![s("memory")], vec![])]);
        assert!(check_tree("cpu", &t).is_err());
        let t = root(vec![]);
        assert!(check_tree("cpu", &t).is_err());
    }

    #[test]
    fn refuses_include_and_loadplugin_at_any_depth() {
        for bad in ["Include", "include", "LoadPlugin"] {
            let t = root(vec![item(
                "Plugin",
                vec![s("df")],
                vec![item(
                    "Deep",
                    vec![],
                    vec![item(bad, vec![s("/etc/passwd")], vec![])],
                )],
            )]);
            let e = check_tree("df", &t).unwrap_err();
            assert!(e.contains("may not contain"), "{e}");
        }
    }

    #[test]
    fn text_limits() {
        assert!(check_text("Interface \"lo\"").is_ok());
        assert!(check_text("a\0b").is_err());
        assert!(check_text(&"x".repeat(MAX_CONFIG_BYTES + 1)).is_err());
    }

    #[test]
    fn runtime_files() {
        assert_eq!(
            runtime_file("cpu", true, Some(2.5), None),
            "TypesDB \"/dev/null\"\n<LoadPlugin \"cpu\">\n  Interval 2.5\n</LoadPlugin>\n"
        );
        assert_eq!(
            runtime_file("df", false, None, Some("MountPoint \"/\"")),
            "TypesDB \"/dev/null\"\n<Plugin \"df\">\nMountPoint \"/\"\n</Plugin>\n"
        );
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}

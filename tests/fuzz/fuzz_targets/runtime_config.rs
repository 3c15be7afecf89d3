//! The config text of `PUT /v1/plugins/{name}` (`"config"`), raw: what
//! `plugins::runtime_config` does with it before and after collectd's
//! parser: `check_text` (size, NUL), `block_file` (the text inside the
//! plugin's block), `check_tree` (exactly that one block at the top, no
//! Include or LoadPlugin at any depth) and `runtime_file` (the file
//! cf_read applies). collectd's parser is modelled (`fuzz_support::oconfig`):
//! the real one is C inside the daemon.
//!
//! Input: one byte choosing the plugin name, then the text.
//! Invariants: check_text refuses exactly NUL and more than 64 KiB; the
//! block file wraps the text unchanged; check_tree accepts exactly the trees
//! an independent oracle accepts; text that passes yields runtime files
//! (with and without a LoadPlugin block) whose Plugin block is the very
//! block that was checked. Once per process, the deepest nesting that fits
//! in 64 KiB goes through the same path (recursion in check_tree and drop).
#![no_main]

use std::sync::Once;

use fuzz_support::{assert_runtime_file, holds_forbidden, oconfig};
use libfuzzer_sys::fuzz_target;
use rest::model::{ConfigItem, ConfigValue};
use rest::plugins::runtime_config::{
    block_file, check_text, check_tree, runtime_file, MAX_CONFIG_BYTES,
};

const NAMES: [&str; 4] = ["cpu", "interface", "write_prometheus", "a-b"];

fn oracle(name: &str, root: &ConfigItem) -> bool {
    match root.children.as_slice() {
        [b] => {
            b.key.eq_ignore_ascii_case("plugin")
                && b.values == [ConfigValue::String(name.into())]
                && !holds_forbidden(&b.children)
        }
        _ => false,
    }
}

fn check(name: &str, text: &str) {
    let ok = check_text(text).is_ok();
    assert_eq!(
        ok,
        text.len() <= MAX_CONFIG_BYTES && !text.contains('\0'),
        "check_text of {} bytes",
        text.len()
    );
    if !ok {
        return;
    }
    let file = block_file(name, text);
    let head = format!("<Plugin \"{name}\">\n");
    assert!(file.starts_with(&head) && file.ends_with("\n</Plugin>\n"));
    assert_eq!(&file[head.len()..file.len() - "\n</Plugin>\n".len()], text);

    let Ok(tree) = oconfig::parse(&file) else {
        return;
    };
    let accepted = check_tree(name, &tree).is_ok();
    assert_eq!(accepted, oracle(name, &tree), "check_tree on {tree:?}");
    if !accepted {
        return;
    }
    let block = &tree.children[0];
    for load in [false, true] {
        let rt = runtime_file(name, load, load.then_some(2.5), Some(text));
        assert_runtime_file(&rt);
        let parsed = oconfig::parse(&rt).expect("the runtime file parses");
        let plugin = parsed.children.last().expect("a Plugin block");
        assert_eq!(plugin, block, "cf_read would apply another block");
    }
}

fn deepest_nesting() {
    let mut text = String::new();
    let mut depth = 0;
    while text.len() + 2 * "<A 1>\n</A>\n".len() < MAX_CONFIG_BYTES {
        text.push_str("<A 1>\n");
        depth += 1;
    }
    text.push_str("X 1\n");
    text.push_str(&"</A>\n".repeat(depth));
    check("cpu", &text);
    let nested_include = text.replacen("X 1", "Include \"/etc/passwd\"", 1);
    assert!(check_tree(
        "cpu",
        &oconfig::parse(&block_file("cpu", &nested_include)).unwrap()
    )
    .is_err());
}

static DEEP: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    DEEP.call_once(deepest_nesting);
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    check(NAMES[usize::from(sel) % NAMES.len()], text);
});

//! A model of collectd 5.12's config parser (src/liboconfig/scanner.l and
//! parser.y), close enough to turn fuzzed text into the trees collectd
//! would build. The plugin hands config text to the real oconfig inside the
//! daemon; that C code is not linked into the fuzzers.
//!
//! Tokens: `[ \t\b]` and `#...` comments are skipped, `\` + newline
//! continues a line, `/ < >` and newlines are tokens, `true|yes|on` and
//! `false|no|off` are booleans, numbers (decimal, float, hex, octal) and
//! IPv4 addresses (a string) are recognised, `"..."` strings take `\x`
//! escapes (and continue over `\` + newline), `[0-9A-Za-z_]+` is an unquoted
//! string; flex takes the longest match, ties go to the earlier rule, and a
//! character no rule matches is dropped (flex's default rule echoes it).
//!
//! Grammar: `Key arg+ EOL`, `<Key arg*> EOL ... </Key> EOL` (the keys must be
//! equal, case-sensitively), empty lines. Items with neither values nor
//! children are dropped, as oconfig does.

use rest::model::{ConfigItem, ConfigValue};

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Eol,
    Slash,
    Open,
    Close,
    Bool(bool),
    Number(f64),
    /// Unquoted: may be a key.
    Word(String),
    Quoted(String),
}

fn run_len(b: &[u8], i: usize, ok: impl Fn(u8) -> bool) -> usize {
    b[i..].iter().take_while(|&&c| ok(c)).count()
}

/// Length of the longest NUMBER match at `i` (0: none).
fn number_len(b: &[u8], i: usize) -> usize {
    let digits = |j: usize| run_len(b, j, |c| c.is_ascii_digit());
    let sign = usize::from(matches!(b.get(i), Some(b'+' | b'-')));
    // FLOAT: [+-]?[0-9]*\.[0-9]+([eE][+-][0-9]+)?
    let mut float = 0;
    let int = digits(i + sign);
    if b.get(i + sign + int) == Some(&b'.') {
        let frac = digits(i + sign + int + 1);
        if frac > 0 {
            float = sign + int + 1 + frac;
            let e = i + float;
            if matches!(b.get(e), Some(b'e' | b'E')) && matches!(b.get(e + 1), Some(b'+' | b'-')) {
                let exp = digits(e + 2);
                if exp > 0 {
                    float += 2 + exp;
                }
            }
        }
    }
    // HEX: 0[xX][0-9a-fA-F]+
    let hex = if b.get(i) == Some(&b'0') && matches!(b.get(i + 1), Some(b'x' | b'X')) {
        let h = run_len(b, i + 2, |c| c.is_ascii_hexdigit());
        if h > 0 {
            2 + h
        } else {
            0
        }
    } else {
        0
    };
    // DEC: [+-]?[0-9]+ (OCT is a subset of its matches)
    let dec = if int > 0 { sign + int } else { 0 };
    float.max(hex).max(dec)
}

/// Length of an IPv4 address (with an optional :port) at `i` (0: none).
fn ipv4_len(b: &[u8], i: usize) -> usize {
    let mut j = i;
    for part in 0..4 {
        let n = run_len(b, j, |c| c.is_ascii_digit()).min(3);
        if n == 0 {
            return 0;
        }
        let v: u32 = std::str::from_utf8(&b[j..j + n])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(999);
        if v > 255 || (n > 1 && b[j] == b'0') {
            return 0;
        }
        j += n;
        if part < 3 {
            if b.get(j) != Some(&b'.') {
                return 0;
            }
            j += 1;
        }
    }
    if b.get(j) == Some(&b':') {
        let p = run_len(b, j + 1, |c| c.is_ascii_digit()).min(5);
        if p > 0 && b[j + 1] != b'0' {
            j += 1 + p;
        }
    }
    j - i
}

fn parse_number(s: &str) -> f64 {
    let t = s.trim_start_matches('+');
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16).map_or(f64::INFINITY, |v| v as f64);
    }
    t.parse().unwrap_or(0.0)
}

/// `"...` at `i`: the unescaped string and the length consumed, following
/// `\` + newline continuations (leading blanks of the next line dropped).
fn quoted(b: &[u8], i: usize) -> Option<(String, usize)> {
    let mut out = Vec::new();
    let mut j = i + 1;
    loop {
        match *b.get(j)? {
            b'"' => return Some((String::from_utf8_lossy(&out).into_owned(), j + 1 - i)),
            b'\\' => match b.get(j + 1)? {
                b'\n' => {
                    j += 2;
                    j += run_len(b, j, |c| matches!(c, b' ' | b'\t' | 8));
                }
                b'\r' if b.get(j + 2) == Some(&b'\n') => {
                    j += 3;
                    j += run_len(b, j, |c| matches!(c, b' ' | b'\t' | 8));
                }
                &c => {
                    out.push(c);
                    j += 2;
                }
            },
            c => {
                out.push(c);
                j += 1;
            }
        }
    }
}

fn lex(text: &str) -> Vec<Tok> {
    let b = text.as_bytes();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | 8 => i += 1,
            b'#' => i += run_len(b, i, |c| c != b'\n'),
            b'\\' if b.get(i + 1) == Some(&b'\n') => i += 2,
            b'\\' if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') => i += 3,
            b'\n' => {
                toks.push(Tok::Eol);
                i += 1
            }
            b'\r' if b.get(i + 1) == Some(&b'\n') => {
                toks.push(Tok::Eol);
                i += 2
            }
            b'/' => {
                toks.push(Tok::Slash);
                i += 1
            }
            b'<' => {
                toks.push(Tok::Open);
                i += 1
            }
            b'>' => {
                toks.push(Tok::Close);
                i += 1
            }
            b'"' => match quoted(b, i) {
                Some((s, n)) => {
                    toks.push(Tok::Quoted(s));
                    i += n
                }
                None => i += 1,
            },
            _ => {
                let word = run_len(b, i, |c| c.is_ascii_alphanumeric() || c == b'_');
                let num = number_len(b, i);
                let ip = ipv4_len(b, i);
                let boolean = ["true", "yes", "on", "false", "no", "off"]
                    .iter()
                    .find(|w| b[i..].starts_with(w.as_bytes()))
                    .map_or(0, |w| w.len());
                // Longest match; ties to the earlier rule (bool, ip, number, word).
                let best = word.max(num).max(ip).max(boolean);
                if best == 0 {
                    i += 1; // flex's default rule: echoed, i.e. dropped
                    continue;
                }
                let s = &text[i..i + best];
                toks.push(if boolean == best {
                    Tok::Bool(matches!(s, "true" | "yes" | "on"))
                } else if ip == best {
                    Tok::Word(s.to_string())
                } else if num == best {
                    Tok::Number(parse_number(s))
                } else {
                    Tok::Word(s.to_string())
                });
                i += best;
            }
        }
    }
    toks
}

fn value(t: &Tok) -> Option<ConfigValue> {
    match t {
        Tok::Bool(b) => Some(ConfigValue::Boolean(*b)),
        Tok::Number(n) => Some(ConfigValue::Number(*n)),
        Tok::Word(s) | Tok::Quoted(s) => Some(ConfigValue::String(s.clone())),
        _ => None,
    }
}

/// Parses `text` as oconfig would: the root item (key "") and its children.
pub fn parse(text: &str) -> Result<ConfigItem, String> {
    let toks = lex(text);
    let mut i = 0;
    // Open blocks, innermost last; the root is the first.
    let mut stack = vec![ConfigItem::default()];
    let err = |i: usize, what: &str| Err(format!("syntax error at token {i}: {what}"));
    let values = |i: &mut usize| {
        let mut v = Vec::new();
        while let Some(x) = toks.get(*i).and_then(value) {
            v.push(x);
            *i += 1;
        }
        v
    };
    while i < toks.len() {
        match &toks[i] {
            Tok::Eol => i += 1,
            Tok::Word(key) => {
                i += 1;
                let v = values(&mut i);
                if v.is_empty() {
                    return err(i, "an option needs a value");
                }
                if toks.get(i) != Some(&Tok::Eol) {
                    return err(i, "expected the end of the line");
                }
                i += 1;
                stack.last_mut().unwrap().children.push(ConfigItem {
                    key: key.clone(),
                    values: v,
                    children: Vec::new(),
                });
            }
            Tok::Open if toks.get(i + 1) == Some(&Tok::Slash) => {
                let Some(Tok::Word(key)) = toks.get(i + 2) else {
                    return err(i, "expected a key after </");
                };
                if toks.get(i + 3) != Some(&Tok::Close) || toks.get(i + 4) != Some(&Tok::Eol) {
                    return err(i, "expected > and the end of the line");
                }
                i += 5;
                if stack.len() < 2 {
                    return err(i, "a block end without a block");
                }
                let block = stack.pop().unwrap();
                if block.key != *key {
                    return err(i, "block not closed");
                }
                if !block.values.is_empty() || !block.children.is_empty() {
                    stack.last_mut().unwrap().children.push(block);
                }
            }
            Tok::Open => {
                let Some(Tok::Word(key)) = toks.get(i + 1) else {
                    return err(i, "expected a key after <");
                };
                i += 2;
                let v = values(&mut i);
                if toks.get(i) != Some(&Tok::Close) || toks.get(i + 1) != Some(&Tok::Eol) {
                    return err(i, "expected > and the end of the line");
                }
                i += 2;
                stack.push(ConfigItem {
                    key: key.clone(),
                    values: v,
                    children: Vec::new(),
                });
            }
            _ => return err(i, "unexpected token"),
        }
    }
    if stack.len() != 1 {
        return err(i, "unclosed block");
    }
    Ok(stack.pop().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> ConfigValue {
        ConfigValue::String(v.into())
    }

    #[test]
    fn like_oconfig() {
        let t = parse(
            "<Plugin \"interface\">\n  Interface \"lo\" # x\n  IgnoreSelected true\n\
             Port 0x1F 2.5 -3\n  Server 127.0.0.1:80 a-b\n</Plugin>\n",
        )
        .unwrap();
        let p = &t.children[0];
        assert_eq!(
            (p.key.as_str(), &p.values[..]),
            ("Plugin", &[s("interface")][..])
        );
        assert_eq!(p.children[0].values, [s("lo")]);
        assert_eq!(p.children[1].values, [ConfigValue::Boolean(true)]);
        assert_eq!(
            p.children[2].values,
            [31.0, 2.5, -3.0].map(ConfigValue::Number)
        );
        // '-' matches no rule and is dropped
        assert_eq!(p.children[3].values, [s("127.0.0.1:80"), s("a"), s("b")]);
        assert!(parse("<A>\n</a>\n").is_err());
        assert!(parse("<A>\n").is_err());
        assert!(parse("Key\n").is_err());
        assert!(parse("Key 1").is_err());
        // empty blocks vanish
        assert!(parse("<A>\n</A>\n").unwrap().children.is_empty());
        assert_eq!(
            parse("K \"a\\\n   b\\\"c\"\n").unwrap().children[0].values,
            [s("ab\"c")]
        );
    }
}

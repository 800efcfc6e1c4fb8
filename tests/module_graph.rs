//! The modules of `src/` import each other one way only: this test reads every `crate::`,
//! `super::` and `self::` path in the code (comments and strings aside) and fails on a cycle.
//!
//! Each file is a node. A path such as `crate::format::multipart::write::random_u64` is an edge
//! to the deepest file it names (`src/format/multipart/write.rs`). A parent module declaring or
//! re-exporting its own children (`pub use multipart::Multipart;` in `format/mod.rs`) is not an
//! edge: the parent contains the child. `lib.rs` only declares and re-exports, so code must not
//! import through the crate root (`crate::BatchLayer`); it names the module that defines the item,
//! which this test also checks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path (`["format", "multipart", "write"]`) for every file under `src/`.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let mut segs: Vec<String> = rel
                .iter()
                .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            if segs.last().is_some_and(|s| s == "mod" || s == "lib") {
                segs.pop();
            }
            out.insert(segs, path);
        }
    }
    out
}

/// The code of a file with comments, string literals and char literals blanked out, so that doc
/// links and messages are not read as imports. The unit tests at the bottom of a file (from
/// `#[cfg(test)]` and `mod tests`) are left out: they may build the layer to test a stage.
fn code_only(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let b = text.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'r'
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
            && (b[i + 1..].starts_with(b"\"") || b[i + 1..].starts_with(b"#\""))
        {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while j < b.len() && b[j] == b'#' {
                hashes += 1;
                j += 1;
            }
            if j < b.len() && b[j] == b'"' {
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                j += 1;
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = j + close.len();
                out.push_str("\"\"");
            } else {
                out.push('r');
                i += 1;
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('x' or '\n'); a lifetime has no closing quote.
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Every path that starts with `crate`, `super` or `self`, as its segments, with braces of a
/// `use` group expanded one level (`crate::a::{b, c::d}` gives `a::b` and `a::c::d`).
fn paths(code: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let at = from + at;
            from = at + start.len();
            if at > 0 && (ident(bytes[at - 1]) || bytes[at - 1] == b':') {
                continue;
            }
            let root = start.trim_end_matches("::").to_owned();
            let mut segs = Vec::new();
            let mut i = from;
            loop {
                // `super::super::x`.
                let s = i;
                while i < bytes.len() && ident(bytes[i]) {
                    i += 1;
                }
                if i > s {
                    segs.push(code[s..i].to_owned());
                }
                if code[i..].starts_with("::{") {
                    let close = code[i..].find('}').map_or(bytes.len(), |c| i + c);
                    for item in code[i + 3..close].split(',') {
                        let mut group = segs.clone();
                        group.extend(
                            item.split("::")
                                .map(|s| s.trim().split(' ').next().unwrap_or("").to_owned())
                                .filter(|s| !s.is_empty() && s != "self" && s != "*"),
                        );
                        found.push((root.clone(), group));
                    }
                    break;
                }
                if code[i..].starts_with("::") && i > s {
                    i += 2;
                    continue;
                }
                found.push((root.clone(), segs));
                break;
            }
        }
    }
    found
}

/// The module a path lands in: the deepest module whose segments prefix it.
fn resolve<'a>(
    mods: &'a BTreeMap<Vec<String>, PathBuf>,
    base: &[String],
    root: &str,
    segs: &[String],
) -> Option<&'a Vec<String>> {
    let mut full: Vec<String> = match root {
        "crate" => Vec::new(),
        "self" => base.to_vec(),
        _ => base[..base.len().saturating_sub(1)].to_vec(),
    };
    let mut rest = segs;
    while root == "super" && rest.first().is_some_and(|s| s == "super") {
        full.pop();
        rest = &rest[1..];
    }
    full.extend(rest.iter().cloned());
    (0..=full.len())
        .rev()
        .find_map(|n| mods.get_key_value(&full[..n]).map(|(k, _)| k))
}

#[test]
fn src_modules_import_one_way() {
    // `MODULE_GRAPH_SRC` points the check at another tree (an older checkout, say).
    let src = std::env::var_os("MODULE_GRAPH_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let mods = modules(&src);
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    let mut through_root = Vec::new();
    for (module, file) in &mods {
        let text = std::fs::read_to_string(file).expect("read file");
        let code = code_only(&text);
        for (root, segs) in paths(&code) {
            let Some(target) = resolve(&mods, module, &root, &segs) else {
                continue;
            };
            if target.is_empty() && !module.is_empty() {
                // `crate::Name`: an item of lib.rs itself, which holds only re-exports.
                through_root.push(format!("{}: crate::{}", file.display(), segs.join("::")));
                continue;
            }
            // A module naming itself, or a parent naming its own child (a re-export), is
            // containment, not an import; a child naming its parent is an import.
            if module.is_empty() || target.starts_with(module) {
                continue;
            }
            edges
                .entry(module.clone())
                .or_default()
                .insert(target.clone());
        }
    }
    assert!(
        through_root.is_empty(),
        "code imports through the crate root instead of naming the module:\n{}",
        through_root.join("\n")
    );
    // Depth-first search for a cycle, reporting it by file.
    let mut colour: BTreeMap<&Vec<String>, u8> = BTreeMap::new();
    let mut path: Vec<&Vec<String>> = Vec::new();
    fn visit<'a>(
        node: &'a Vec<String>,
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        colour: &mut BTreeMap<&'a Vec<String>, u8>,
        path: &mut Vec<&'a Vec<String>>,
    ) -> Option<Vec<String>> {
        match colour.get(node) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|n| *n == node).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].iter().map(|m| m.join("::")).collect();
                cycle.push(node.join("::"));
                return Some(cycle);
            }
            _ => {}
        }
        colour.insert(node, 1);
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, colour, path) {
                return Some(cycle);
            }
        }
        path.pop();
        colour.insert(node, 2);
        None
    }
    for node in mods.keys() {
        if let Some(cycle) = visit(node, &edges, &mut colour, &mut path) {
            panic!(
                "the modules import each other in a circle: {}",
                cycle.join(" -> ")
            );
        }
    }
    // The test must see the crate's real imports, or it proves nothing.
    let total: usize = edges.values().map(BTreeSet::len).sum();
    assert!(
        total > 20,
        "only {total} imports found: the scanner is broken"
    );
}

#[test]
fn the_scanner_sees_a_cycle() {
    let code = code_only(
        "use crate::a::{b, c::D}; // crate::z\nfn f() { super::x::y(); let s = \"crate::q\"; }",
    );
    let found = paths(&code);
    assert_eq!(
        found,
        vec![
            ("crate".to_owned(), vec!["a".to_owned(), "b".to_owned()]),
            (
                "crate".to_owned(),
                vec!["a".to_owned(), "c".to_owned(), "D".to_owned()]
            ),
            ("super".to_owned(), vec!["x".to_owned(), "y".to_owned()]),
        ]
    );
}

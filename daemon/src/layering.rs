//! The daemon's layering, checked: every `crate::…` path in `daemon/src`
//! must point to a lower layer than the file's own module (see
//! `docs/daemon.md`). A test, so an upward import fails `cargo test`.

use std::path::Path;

/// Top-level modules by layer; a module may use only lower layers.
const LAYERS: &[(&str, u8)] = &[
    ("cli", 8),
    ("plan", 8),
    ("app", 7),
    ("http", 6),
    ("notify", 6),
    ("status", 5),
    ("tasks", 4),
    ("config", 3),
    ("integrations", 2),
    ("state", 1),
    ("scheduler", 1),
];

/// Upward imports that are known and wait for a fix, with the reason.
const KNOWN: &[(&str, &str, &str)] = &[];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The top-level module a source file belongs to.
fn module_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// Every `crate::NAME` in `text`, with its line number.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `$crate::` in macros and `kloset_crate::` are not ours.
            let before = rest[..at].chars().last();
            if !name.is_empty()
                && !matches!(before, Some(c) if c.is_alphanumeric() || c == '_' || c == '$')
            {
                out.push((n + 1, name));
            }
            rest = after;
        }
    }
    out
}

fn visit(dir: &Path, root: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("cannot read {}", dir.display());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            visit(&path, root, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(root).unwrap_or(&path);
        let Some(own) = module_of(relative) else {
            continue;
        };
        let Some(own_layer) = layer(&own) else {
            continue; // lib.rs, main.rs, bin/, this file
        };
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for (line, target) in crate_paths(&text) {
            let Some(target_layer) = layer(&target) else {
                continue;
            };
            let known = KNOWN.iter().any(|(a, b, _)| *a == own && *b == target);
            if target != own && target_layer >= own_layer && !known {
                out.push(format!(
                    "{}:{line}: `{own}` uses `crate::{target}`, which is not below it",
                    relative.display()
                ));
            }
        }
    }
}

#[test]
fn imports_point_only_downward() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut upward = Vec::new();
    visit(&root, &root, &mut upward);
    assert!(
        upward.is_empty(),
        "upward imports (see docs/daemon.md, Layers):\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_check_finds_an_upward_import() {
    let found =
        crate_paths("use crate::app::live::Live; // crate::http\nlet x = $crate::state::y;");
    assert_eq!(found, vec![(1, "app".to_string())]);
    assert!(layer("app") > layer("http"));
    assert!(
        KNOWN
            .iter()
            .all(|(a, b, why)| layer(a) <= layer(b) && !why.is_empty())
    );
}

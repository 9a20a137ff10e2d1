//! Every deployment example in `docs/` works as shown:
//!
//! - the Ansible playbook parses, its handlers and templates exist, and its
//!   `templates/conf.d/*.toml.j2` rendered with the playbook's own variables
//!   make a config directory the real `klosetd validate` accepts; its
//!   systemd drop-in passes `systemd-analyze verify` with the unit;
//! - the NixOS module parses (`nix-instantiate --parse`) and sets the same
//!   service directives as `systemd/klosetd.service`;
//! - in `docs/operations.md` (and every TOML block of
//!   `docs/configuration.md`): each ```toml block is a complete, valid
//!   config directory (a block whose first line is `# fragment` is skipped),
//!   each ```yaml block parses, each ```nix block parses and the settings
//!   block evaluates to a valid config, each ```ini block is a valid unit
//!   drop-in, each ```sh block passes `bash -n`, and relative links resolve;
//! - the Prometheus rules parse, and every `klosetd_*` metric they or the
//!   docs name is exported by a real daemon's `/metrics`, whose documented
//!   endpoints answer.
//!
//! Secrets the configs name are created as placeholders in a temporary
//! `$CREDENTIALS_DIRECTORY` (or next to the file for relative paths), and
//! `*_env` variables are set. The tools come from Debian packages
//! `python3-yaml`, `nix-bin` and `systemd`; a missing one fails the test
//! with the package to install, never skips it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

#[path = "ops_examples/configs.rs"]
mod configs;
#[path = "ops_examples/monitoring.rs"]
mod monitoring;
#[path = "ops_examples/tools.rs"]
mod tools;

use configs::*;
use tools::*;

// ------------------------------------------------------------ Ansible --

/// Renders an Ansible template that uses only `{{ var }}` and
/// `{{ var | to_json }}` (no control flow), failing on anything else.
fn render_template(text: &str, vars: &BTreeMap<String, Value>, what: &str) -> String {
    assert!(
        !text.contains("{%") && !text.contains("{#"),
        "{what}: templates must not use Jinja statements or comments (the test renders them without Jinja)"
    );
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .unwrap_or_else(|| panic!("{what}: unclosed {{{{"))
            + start;
        let expr = rest[start + 2..end].trim();
        let (name, filter) = match expr.split_once('|') {
            Some((n, f)) => (n.trim(), Some(f.trim())),
            None => (expr, None),
        };
        let value = vars
            .get(name)
            .unwrap_or_else(|| panic!("{what}: unknown variable {name:?}"));
        match (filter, value) {
            (Some("to_json"), v) => out.push_str(&v.to_string()),
            (None, Value::String(s)) => {
                assert!(!s.contains("{{"), "{what}: {name} is itself a template");
                out.push_str(s);
            }
            (None, Value::Number(n)) => out.push_str(&n.to_string()),
            (None, Value::Bool(b)) => out.push_str(if *b { "True" } else { "False" }),
            (f, v) => panic!("{what}: cannot render {{{{ {expr} }}}} ({f:?}, {v})"),
        }
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

fn ansible_dir() -> PathBuf {
    repo().join("docs/examples/ansible")
}

/// The play's variables plus the Ansible facts the templates use.
fn playbook_vars() -> (Value, BTreeMap<String, Value>) {
    let path = ansible_dir().join("playbook.yml");
    let book = yaml_to_json(&read(&path), "docs/examples/ansible/playbook.yml");
    let play = book
        .as_array()
        .and_then(|a| a.first())
        .expect("the playbook is a list of plays")
        .clone();
    let mut vars: BTreeMap<String, Value> = play["vars"]
        .as_object()
        .expect("the play has vars")
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.insert("inventory_hostname".into(), "backup-host-1".into());
    (play, vars)
}

fn template_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".j2"))
        .collect();
    files.sort();
    files
}

#[test]
fn ansible_playbook_is_consistent() {
    let (play, vars) = playbook_vars();
    assert_eq!(play["become"], Value::Bool(true), "the play needs root");
    let handlers: BTreeSet<&str> = play["handlers"]
        .as_array()
        .expect("handlers")
        .iter()
        .map(|h| h["name"].as_str().expect("handler name"))
        .collect();
    let tasks = play["tasks"].as_array().expect("tasks");
    let mut all_tasks: Vec<&Value> = Vec::new();
    for t in tasks {
        if t["block"].is_array() {
            for part in ["block", "rescue", "always"] {
                if let Some(inner) = t[part].as_array() {
                    all_tasks.extend(inner);
                }
            }
        } else {
            all_tasks.push(t);
        }
    }
    for t in &all_tasks {
        let name = t["name"].as_str().expect("every task is named");
        match &t["notify"] {
            Value::Null => {}
            Value::String(h) => assert!(handlers.contains(h.as_str()), "{name}: no handler {h:?}"),
            other => panic!("{name}: notify {other}"),
        }
        // Every module is named with its fully qualified collection name.
        let module = t
            .as_object()
            .expect("task")
            .keys()
            .find(|k| k.contains('.'))
            .unwrap_or_else(|| panic!("{name}: no ansible.builtin.* module"));
        assert!(module.starts_with("ansible.builtin."), "{name}: {module}");
        if let Some(src) = t[module]["src"].as_str()
            && src.starts_with("templates/")
        {
            assert!(
                ansible_dir().join(src).is_file(),
                "{name}: {src} is missing"
            );
        }
    }
    let text = read(&ansible_dir().join("playbook.yml"));
    for needle in [
        "klosetd, validate",
        "CREDENTIALS_DIRECTORY",
        "changed_when: false",
        "templates/conf.d/*.toml.j2",
    ] {
        assert!(text.contains(needle), "the playbook lost {needle:?}");
    }

    // The credentials written, loaded by the drop-in and used by the
    // TOML are the same names.
    let written: BTreeSet<String> = vars["klosetd_credential_names"]
        .as_array()
        .expect("klosetd_credential_names")
        .iter()
        .map(|v| v.as_str().expect("name").to_string())
        .collect();
    let drop_in = render_template(
        &read(&ansible_dir().join("templates/klosetd.service.d/10-site.conf.j2")),
        &vars,
        "10-site.conf.j2",
    );
    let loaded: BTreeSet<String> = drop_in
        .lines()
        .filter_map(|l| l.strip_prefix("LoadCredential="))
        .map(|l| l.split(':').next().expect("name").to_string())
        .collect();
    let scratch = tempfile::tempdir().expect("temp dir");
    let conf = render_ansible_conf(scratch.path(), &vars);
    let used = credential_names(&conf);
    assert_eq!(written, loaded, "credential files vs LoadCredential=");
    assert_eq!(
        written, used,
        "credential files vs $CREDENTIALS_DIRECTORY/ in the TOML"
    );
}

fn render_ansible_conf(scratch: &Path, vars: &BTreeMap<String, Value>) -> PathBuf {
    let conf = scratch.join("conf.d");
    std::fs::create_dir_all(&conf).expect("conf dir");
    let templates = template_files(&ansible_dir().join("templates/conf.d"));
    assert!(templates.len() >= 3, "the config templates are missing");
    for t in templates {
        let name = t.file_name().expect("name").to_string_lossy().into_owned();
        assert!(name.ends_with(".toml.j2"), "{name}: only *.toml.j2 here");
        let rendered = render_template(&read(&t), vars, &name);
        std::fs::write(conf.join(name.trim_end_matches(".j2")), rendered).expect("write");
    }
    conf
}

#[test]
fn ansible_templates_render_to_a_valid_config() {
    let (_, vars) = playbook_vars();
    let scratch = tempfile::tempdir().expect("temp dir");
    let conf = render_ansible_conf(scratch.path(), &vars);
    assert_valid_config(&conf, "docs/examples/ansible/templates/conf.d");
}

#[test]
fn ansible_drop_in_verifies_with_the_unit() {
    let (_, vars) = playbook_vars();
    let drop_in = render_template(
        &read(&ansible_dir().join("templates/klosetd.service.d/10-site.conf.j2")),
        &vars,
        "10-site.conf.j2",
    );
    verify_unit_with_drop_in(Some(&drop_in), "the Ansible drop-in");
}

// -------------------------------------------------------------- NixOS --

#[test]
fn nixos_module_parses_and_matches_the_unit() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let module = repo().join("docs/examples/nixos/klosetd.nix");
    nix_parse(scratch.path(), &module, "docs/examples/nixos/klosetd.nix");
    let package = repo().join("docs/examples/nixos/klosetd-package.nix");
    nix_parse(
        scratch.path(),
        &package,
        "docs/examples/nixos/klosetd-package.nix",
    );
    assert!(read(&package).contains("rustPlatform.buildRustPackage"));
    let text = read(&module);
    for needle in [
        "services.klosetd",
        "pkgs.formats.toml",
        "environment.etc.\"klosetd/conf.d\".source",
        "LoadCredential",
        "reloadTriggers",
        "/etc/klosetd/conf.d",
    ] {
        assert!(text.contains(needle), "the module lost {needle:?}");
    }
    // Every directive of the unit's [Service] is set by the module too,
    // except the config directory, which environment.etc owns.
    let unit = read(&repo().join("systemd/klosetd.service"));
    for key in unit_keys(&unit, "Service") {
        if key == "ConfigurationDirectory" {
            continue;
        }
        assert!(
            text.contains(&format!("{key} =")),
            "the NixOS module does not set {key} like systemd/klosetd.service"
        );
    }
}

// ----------------------------------------------------------- the docs --

/// The docs whose fenced blocks are checked.
const DOCS: [&str; 2] = ["operations.md", "configuration.md"];

/// Every Markdown file under `docs/`, relative to it, sorted.
fn all_docs() -> Vec<String> {
    let root = repo().join("docs");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read docs") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                let rel = path.strip_prefix(&root).expect("under docs");
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Every ```toml block of every page under `docs/` is validated by the real
/// `klosetd validate`. In [`DOCS`] each block is a whole example on its
/// own. On the other pages the blocks build one configuration (an
/// integration page declares a resource in one block and the stores that
/// use it in the next), so they are validated together, one file per
/// block. A block that starts with `# fragment` is shown as a piece of a
/// larger file and skipped.
#[test]
fn doc_toml_blocks_are_valid_configs() {
    let mut checked = 0;
    for name in all_docs() {
        let (_, text) = doc(&name);
        let standalone = DOCS.contains(&name.as_str());
        let mut scratch = None;
        let mut lines = Vec::new();
        for (lang, line, block) in fenced_blocks(&text) {
            if lang != "toml" || block.starts_with("# fragment") {
                continue;
            }
            if standalone || scratch.is_none() {
                let dir = tempfile::tempdir().expect("temp dir");
                std::fs::create_dir(dir.path().join("conf.d")).expect("conf dir");
                scratch = Some(dir);
            }
            let Some(dir) = &scratch else { continue };
            let conf = dir.path().join("conf.d");
            std::fs::write(
                conf.join(format!("{:03}-line-{line}.toml", lines.len())),
                &block,
            )
            .expect("write");
            lines.push(line);
            checked += 1;
            if standalone {
                assert_valid_config(&conf, &format!("docs/{name}:{line}"));
            }
        }
        if let (false, Some(dir)) = (standalone, &scratch) {
            let what = format!("docs/{name} (its blocks at lines {lines:?}, together)");
            assert_valid_config(&dir.path().join("conf.d"), &what);
        }
    }
    assert!(checked >= 30, "only {checked} TOML examples were checked");
}

#[test]
fn doc_yaml_blocks_parse() {
    let mut checked = 0;
    for name in DOCS {
        let (_, text) = doc(name);
        for (lang, line, block) in fenced_blocks(&text) {
            if lang == "yaml" || lang == "yml" {
                yaml_to_json(&block, &format!("docs/{name}:{line}"));
                checked += 1;
            }
        }
    }
    assert!(checked >= 1, "no YAML example was checked");
}

/// The marker of the ```nix block that is a whole `settings` attribute set.
const NIX_SETTINGS_MARKER: &str = "# /etc/nixos/klosetd-settings.nix";

#[test]
fn doc_nix_blocks_parse_and_the_settings_are_valid() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let mut settings_checked = 0;
    for name in DOCS {
        let (_, text) = doc(name);
        for (lang, line, block) in fenced_blocks(&text) {
            if lang != "nix" {
                continue;
            }
            let what = format!("docs/{name}:{line}");
            let file = scratch.path().join(format!("block-{line}.nix"));
            std::fs::write(&file, &block).expect("write");
            nix_parse(scratch.path(), &file, &what);
            if !block.starts_with(NIX_SETTINGS_MARKER) {
                continue;
            }
            let out = nix_instantiate(scratch.path(), &["--eval", "--strict", "--json"], &file);
            assert!(
                out.status.success(),
                "{what} does not evaluate:\n{}",
                output_text(&out)
            );
            let json: Value = serde_json::from_slice(&out.stdout).expect("nix printed JSON");
            // What pkgs.formats.toml renders, near enough: the same data as TOML.
            let rendered = toml::to_string(&json).expect("the settings are TOML data");
            let dir = scratch.path().join(format!("settings-{line}"));
            let conf = dir.join("conf.d");
            std::fs::create_dir_all(&conf).expect("conf dir");
            std::fs::write(conf.join("00-nixos.toml"), rendered).expect("write");
            assert_valid_config(&conf, &what);
            settings_checked += 1;
        }
    }
    assert_eq!(
        settings_checked, 1,
        "docs/operations.md has one ```nix block starting with {NIX_SETTINGS_MARKER:?}"
    );
}

#[test]
fn doc_ini_blocks_are_valid_drop_ins() {
    let mut checked = 0;
    for name in DOCS {
        let (_, text) = doc(name);
        for (lang, line, block) in fenced_blocks(&text) {
            if lang == "ini" {
                assert!(
                    block.starts_with("[Service]"),
                    "docs/{name}:{line}: a drop-in"
                );
                verify_unit_with_drop_in(Some(&block), &format!("docs/{name}:{line}"));
                checked += 1;
            }
        }
    }
    assert!(checked >= 1, "no drop-in example was checked");
}

#[test]
fn doc_shell_blocks_parse() {
    for name in DOCS {
        let (_, text) = doc(name);
        for (lang, line, block) in fenced_blocks(&text) {
            if lang != "sh" && lang != "bash" {
                continue;
            }
            let out = run_tool(Command::new("bash").args(["-n", "-c", &block]), "bash");
            assert!(
                out.status.success(),
                "docs/{name}:{line}: bash -n fails:\n{}",
                output_text(&out)
            );
        }
    }
}

#[test]
fn doc_relative_links_resolve() {
    for name in DOCS {
        let (path, text) = doc(name);
        let base = path.parent().expect("docs dir");
        let mut rest = text.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let end = rest.find(')').expect("closed link");
            let target = rest[..end].split('#').next().unwrap_or("");
            if !target.is_empty() && !target.contains("://") {
                assert!(
                    base.join(target).exists(),
                    "docs/{name}: broken link {target:?}"
                );
            }
        }
    }
}

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
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn output_text(out: &Output) -> String {
    format!(
        "exit: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd`, failing with `package` to install when the program is missing.
fn run_tool(cmd: &mut Command, package: &str) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{program} is not installed: run `apt-get install {package}` \
             (scripts/test installs it); this test never skips"
        ),
        Err(e) => panic!("running {program}: {e}"),
    }
}

// ---------------------------------------------------------------- YAML --

/// A python3 that can `import yaml`: the one on PATH, else Debian's.
fn python_with_yaml() -> &'static str {
    for python in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(python)
            .args(["-c", "import yaml"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return python;
        }
    }
    panic!(
        "no python3 with the yaml module: run `apt-get install python3-yaml` \
         (scripts/test installs it); this test never skips"
    )
}

/// Parses YAML with `yaml.safe_load` and returns it as JSON.
fn yaml_to_json(text: &str, what: &str) -> Value {
    let mut child = Command::new(python_with_yaml())
        .args([
            "-c",
            "import sys, json, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write YAML to python3");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "{what} is not valid YAML:\n{}",
        output_text(&out)
    );
    serde_json::from_slice(&out.stdout).expect("python3 printed JSON")
}

// ----------------------------------------------------------------- Nix --

/// `nix-instantiate ARGS FILE` with every Nix directory inside `scratch`,
/// so it needs neither /nix nor root.
fn nix_instantiate(scratch: &Path, args: &[&str], file: &Path) -> Output {
    let mut cmd = Command::new("nix-instantiate");
    cmd.args(args)
        .arg(file)
        .env("NIX_STATE_DIR", scratch.join("state"))
        .env("NIX_STORE_DIR", scratch.join("store"))
        .env("NIX_LOG_DIR", scratch.join("log"))
        .env("NIX_CONF_DIR", scratch.join("conf"))
        .env("HOME", scratch);
    run_tool(&mut cmd, "nix-bin")
}

fn nix_parse(scratch: &Path, file: &Path, what: &str) {
    let out = nix_instantiate(scratch, &["--parse"], file);
    assert!(
        out.status.success(),
        "{what} does not parse:\n{}",
        output_text(&out)
    );
}

// ------------------------------------------------------------- systemd --

const UNIT_EXEC_START: &str = "ExecStart=/usr/bin/klosetd ";

/// Verifies the unit, with `drop_in` (if any) in `klosetd.service.d/`, and
/// fails on any warning about them.
fn verify_unit_with_drop_in(drop_in: Option<&str>, what: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = read(&repo().join("systemd/klosetd.service"));
    assert!(unit.contains(UNIT_EXEC_START), "unit ExecStart changed");
    let unit = unit.replacen(
        UNIT_EXEC_START,
        &format!("ExecStart=\"{}\" ", env!("CARGO_BIN_EXE_klosetd")),
        1,
    );
    let path = dir.path().join("klosetd.service");
    std::fs::write(&path, unit).expect("write unit");
    if let Some(text) = drop_in {
        let d = dir.path().join("klosetd.service.d");
        std::fs::create_dir(&d).expect("drop-in dir");
        std::fs::write(d.join("50-example.conf"), text).expect("write drop-in");
    }
    let out = run_tool(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no", "--generators=no"])
            .arg(&path),
        "systemd",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("klosetd")).collect();
    assert!(
        out.status.success() && warnings.is_empty(),
        "{what}: systemd-analyze verify complains:\n{}",
        output_text(&out)
    );
}

/// Keys set (not commented) in a section of a unit file.
fn unit_keys(text: &str, section: &str) -> BTreeSet<String> {
    let mut current = String::new();
    let mut keys = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            current = line.trim_matches(['[', ']']).to_string();
        } else if !line.starts_with('#')
            && current == section
            && let Some((k, _)) = line.split_once('=')
        {
            keys.insert(k.trim().to_string());
        }
    }
    keys
}

// -------------------------------------------------- config validation --

fn strip_credentials_prefix(path: &str) -> Option<&str> {
    ["$CREDENTIALS_DIRECTORY/", "${CREDENTIALS_DIRECTORY}/"]
        .iter()
        .find_map(|p| path.strip_prefix(p))
}

/// The secrets a TOML value names: `*_file` paths and `*_env` variables.
fn collect_secrets(value: &toml::Value, files: &mut Vec<String>, envs: &mut Vec<String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                match v {
                    toml::Value::String(s) if k.ends_with("_file") => files.push(s.clone()),
                    toml::Value::String(s) if k.ends_with("_env") => envs.push(s.clone()),
                    _ => collect_secrets(v, files, envs),
                }
            }
        }
        toml::Value::Array(a) => a.iter().for_each(|v| collect_secrets(v, files, envs)),
        _ => {}
    }
}

/// The credential names `$CREDENTIALS_DIRECTORY/NAME` a config uses.
fn credential_names(conf: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in toml_files(conf) {
        let value: toml::Value = toml::from_str(&read(&file))
            .unwrap_or_else(|e| panic!("{} is not TOML: {e}", file.display()));
        let (mut files, mut envs) = (Vec::new(), Vec::new());
        collect_secrets(&value, &mut files, &mut envs);
        names.extend(
            files
                .iter()
                .filter_map(|f| strip_credentials_prefix(f))
                .map(str::to_string),
        );
    }
    names
}

fn toml_files(conf: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(conf)
        .expect("read config dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// Runs the real `klosetd validate` on `conf` after creating placeholder
/// secrets, and fails with its output unless the config is valid.
fn assert_valid_config(conf: &Path, what: &str) {
    let creds = conf
        .parent()
        .expect("config dir has a parent")
        .join("credentials");
    std::fs::create_dir_all(&creds).expect("credentials dir");
    let mut envs = Vec::new();
    for file in toml_files(conf) {
        let value: toml::Value = toml::from_str(&read(&file))
            .unwrap_or_else(|e| panic!("{what}: {} is not TOML: {e}", file.display()));
        let mut files = Vec::new();
        collect_secrets(&value, &mut files, &mut envs);
        for f in files {
            let target = if let Some(name) = strip_credentials_prefix(&f) {
                creds.join(name)
            } else if Path::new(&f).is_relative() {
                file.parent().expect("parent").join(&f)
            } else {
                panic!(
                    "{what}: secret {f:?} is an absolute path the test cannot create; \
                     use $CREDENTIALS_DIRECTORY/NAME or a relative path in examples"
                );
            };
            if !target.exists() {
                std::fs::create_dir_all(target.parent().expect("parent")).expect("secret dir");
                std::fs::write(&target, "placeholder secret\n").expect("write secret");
            }
        }
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_klosetd"));
    cmd.arg("validate")
        .arg(conf)
        .env("CREDENTIALS_DIRECTORY", &creds);
    for e in &envs {
        cmd.env(e, "placeholder secret");
    }
    let out = cmd.output().expect("run klosetd validate");
    let files: Vec<String> = toml_files(conf)
        .iter()
        .map(|f| format!("--- {}\n{}", f.display(), read(f)))
        .collect();
    assert!(
        out.status.success(),
        "{what}: klosetd validate rejects it:\n{}\n{}",
        output_text(&out),
        files.join("\n")
    );
}

// ---------------------------------------------------- fenced blocks --

/// The fenced code blocks of a Markdown file: (language, first line number, text).
fn fenced_blocks(markdown: &str) -> Vec<(String, usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, usize, String, usize)> = None;
    for (i, line) in markdown.lines().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        match &mut open {
            None => {
                if let Some(lang) = trimmed.strip_prefix("```") {
                    open = Some((lang.trim().to_string(), i + 2, String::new(), indent));
                }
            }
            Some((lang, start, text, ind)) => {
                if trimmed.starts_with("```") {
                    blocks.push((std::mem::take(lang), *start, std::mem::take(text)));
                    open = None;
                } else {
                    let cut = line
                        .char_indices()
                        .find(|(n, c)| *n >= *ind || !c.is_whitespace())
                        .map_or(line.len(), |(n, _)| n);
                    text.push_str(&line[cut..]);
                    text.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "an unclosed ``` block");
    blocks
}

fn doc(name: &str) -> (PathBuf, String) {
    let path = repo().join("docs").join(name);
    let text = read(&path);
    (path, text)
}

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

#[test]
fn doc_toml_blocks_are_valid_configs() {
    let mut checked = 0;
    for name in DOCS {
        let (_, text) = doc(name);
        for (lang, line, block) in fenced_blocks(&text) {
            if lang != "toml" || block.starts_with("# fragment") {
                continue;
            }
            let scratch = tempfile::tempdir().expect("temp dir");
            let conf = scratch.path().join("conf.d");
            std::fs::create_dir(&conf).expect("conf dir");
            std::fs::write(conf.join("00-example.toml"), &block).expect("write");
            assert_valid_config(&conf, &format!("docs/{name}:{line}"));
            checked += 1;
        }
    }
    assert!(checked >= 1, "no TOML example was checked");
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

// ------------------------------------------------------- monitoring --

/// Metric names (`klosetd_*`) in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("klosetd_") {
        let start = i + at;
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        // `klosetd_*` and `klosetd_` name the prefix, not a metric.
        if before_ok && !text[start..end].ends_with('_') {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

/// A running daemon on an empty config, serving on a Unix socket.
struct Daemon {
    child: std::process::Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("conf.d");
        std::fs::create_dir(&conf).expect("conf dir");
        let socket = dir.path().join("http.sock");
        std::fs::write(
            conf.join("00-daemon.toml"),
            format!(
                "[daemon]\nlisten = \"unix:{}\"\nstate_dir = \"{}\"\n",
                socket.display(),
                dir.path().join("state").display()
            ),
        )
        .expect("write config");
        let child = Command::new(env!("CARGO_BIN_EXE_klosetd"))
            .args(["run", "--config"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start klosetd");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "klosetd did not start serving");
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon {
            child,
            socket,
            _dir: dir,
        }
    }

    /// `GET target`: (status code, body).
    fn get(&self, target: &str) -> (u16, String) {
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            s,
            "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("read response");
        let code = response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {response:?}"));
        let body = response
            .split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_string());
        (code, body)
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(35);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "klosetd exited with {status} on SIGTERM");
                return;
            }
            assert!(Instant::now() < deadline, "klosetd did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn prometheus_rules_and_docs_use_exported_metrics_and_endpoints() {
    let rules_path = repo().join("docs/examples/prometheus/klosetd-rules.yml");
    let rules_text = read(&rules_path);
    let rules = yaml_to_json(&rules_text, "docs/examples/prometheus/klosetd-rules.yml");
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let alert = rule["alert"].as_str().expect("alerting rules only");
            assert!(rule["expr"].is_string(), "{alert}: expr");
            assert!(rule["labels"]["severity"].is_string(), "{alert}: severity");
            assert!(
                rule["annotations"]["summary"].is_string(),
                "{alert}: summary"
            );
            if let Some(f) = rule["for"].as_str() {
                assert!(humantime::parse_duration(f).is_ok(), "{alert}: for {f:?}");
            }
            alerts.insert(alert.to_string());
        }
    }
    for required in [
        "KlosetdConfigReloadFailing",
        "KlosetdObjectNotReady",
        "KlosetdBackupStale",
        "KlosetdTaskFailures",
    ] {
        assert!(alerts.contains(required), "missing alert {required}");
    }

    let daemon = Daemon::start();
    let (code, metrics) = daemon.get("/metrics");
    assert_eq!(code, 200, "/metrics: {metrics}");
    let exported: BTreeSet<String> = metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let (_, operations) = doc("operations.md");
    // The Monitoring section (elsewhere klosetd_* are Ansible variables).
    let monitoring = operations
        .split_once("\n## Monitoring")
        .map(|(_, rest)| rest.split("\n## ").next().unwrap_or(rest))
        .expect("docs/operations.md has a Monitoring section");
    for (what, text) in [
        ("klosetd-rules.yml", rules_text.as_str()),
        ("docs/operations.md, Monitoring", monitoring),
    ] {
        for name in metric_names(text) {
            assert!(
                exported.contains(&name),
                "{what} names {name}, which /metrics does not export (it exports {exported:?})"
            );
        }
    }
    // The endpoints the docs show, on an empty and therefore ready config.
    for (target, want) in [
        ("/healthz", 200),
        ("/readyz", 200),
        ("/status", 200),
        ("/api/v1/status", 200),
        ("/api/v1/schedules", 200),
        ("/api/v1/tasks?status=failed&limit=20", 200),
    ] {
        let (code, body) = daemon.get(target);
        assert_eq!(code, want, "GET {target}: {body}");
        assert!(
            operations.contains(target),
            "docs/operations.md no longer shows {target}"
        );
    }
    let (_, status) = daemon.get("/api/v1/status");
    let status: Value = serde_json::from_str(&status).expect("JSON status");
    for pointer in [
        "/config/applied_revision",
        "/config/attempted_revision",
        "/config/valid",
        "/config/errors",
        "/config/restart_required",
        "/problems",
        "/running",
    ] {
        assert!(
            status.pointer(pointer).is_some(),
            "the docs' jq examples read {pointer}, which /api/v1/status lacks: {status}"
        );
    }
    daemon.stop();
}

//! Helpers of the ops-examples tests: placeholder secrets, config
//! directories checked with the real `klosetd validate`, and fenced code
//! blocks of the docs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::tools::*;

// -------------------------------------------------- config validation --

pub fn strip_credentials_prefix(path: &str) -> Option<&str> {
    ["$CREDENTIALS_DIRECTORY/", "${CREDENTIALS_DIRECTORY}/"]
        .iter()
        .find_map(|p| path.strip_prefix(p))
}

/// The secrets a TOML value names: `*_file` paths and `*_env` variables.
pub fn collect_secrets(
    value: &toml::Value,
    files: &mut Vec<(String, String)>,
    envs: &mut Vec<(String, String)>,
) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                match v {
                    toml::Value::String(s) if k.ends_with("_file") => {
                        files.push((k.clone(), s.clone()))
                    }
                    toml::Value::String(s) if k.ends_with("_env") => {
                        envs.push((k.clone(), s.clone()))
                    }
                    _ => collect_secrets(v, files, envs),
                }
            }
        }
        toml::Value::Array(a) => a.iter().for_each(|v| collect_secrets(v, files, envs)),
        _ => {}
    }
}

/// The credential names `$CREDENTIALS_DIRECTORY/NAME` a config uses.
pub fn credential_names(conf: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in toml_files(conf) {
        let value: toml::Value = toml::from_str(&read(&file))
            .unwrap_or_else(|e| panic!("{} is not TOML: {e}", file.display()));
        let (mut files, mut envs) = (Vec::new(), Vec::new());
        collect_secrets(&value, &mut files, &mut envs);
        names.extend(
            files
                .iter()
                .filter_map(|(_, f)| strip_credentials_prefix(f))
                .map(str::to_string),
        );
    }
    names
}

pub fn toml_files(conf: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(conf)
        .expect("read config dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// What a placeholder secret holds: a URL where the key reads one
/// (`url_file`, `url_env` of notification channels), else some text.
fn placeholder(key: &str) -> &'static str {
    if key.starts_with("url_") {
        "https://hooks.example.org/placeholder"
    } else {
        "placeholder secret"
    }
}

/// Runs the real `klosetd validate` on `conf` after creating placeholder
/// secrets, and fails with its output unless the config is valid.
pub fn assert_valid_config(conf: &Path, what: &str) {
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
        for (key, f) in files {
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
                std::fs::write(&target, format!("{}\n", placeholder(&key))).expect("write secret");
            }
        }
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_klosetd"));
    cmd.arg("validate")
        .arg(conf)
        .env("CREDENTIALS_DIRECTORY", &creds);
    for (key, e) in &envs {
        cmd.env(e, placeholder(key));
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
pub fn fenced_blocks(markdown: &str) -> Vec<(String, usize, String)> {
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

pub fn doc(name: &str) -> (PathBuf, String) {
    let path = repo().join("docs").join(name);
    let text = read(&path);
    (path, text)
}

//! Helpers of the ops-examples tests: the repository, and the external
//! tools they run (python3-yaml, nix-instantiate, systemd-analyze).

use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

pub fn output_text(out: &Output) -> String {
    format!(
        "exit: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd`, failing with `package` to install when the program is missing.
pub fn run_tool(cmd: &mut Command, package: &str) -> Output {
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
pub fn python_with_yaml() -> &'static str {
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
pub fn yaml_to_json(text: &str, what: &str) -> Value {
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
pub fn nix_instantiate(scratch: &Path, args: &[&str], file: &Path) -> Output {
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

pub fn nix_parse(scratch: &Path, file: &Path, what: &str) {
    let out = nix_instantiate(scratch, &["--parse"], file);
    assert!(
        out.status.success(),
        "{what} does not parse:\n{}",
        output_text(&out)
    );
}

// ------------------------------------------------------------- systemd --

pub const UNIT_EXEC_START: &str = "ExecStart=/usr/bin/klosetd ";

/// Verifies the unit, with `drop_in` (if any) in `klosetd.service.d/`, and
/// fails on any warning about them.
pub fn verify_unit_with_drop_in(drop_in: Option<&str>, what: &str) {
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
pub fn unit_keys(text: &str, section: &str) -> BTreeSet<String> {
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

//! The Debian package (`cargo deb -p klosetd`, docs/packaging.md), built from
//! the binaries this test run already has and checked with the real tools.
//!
//! To stay cheap in CI, the package is made once per run from the debug
//! binaries cargo built for these tests (`--no-build --profile dev`,
//! stripped, `--fast` compression) instead of a release build; the man
//! pages and completions are generated in process by `xtask` into
//! `target/debug/package-assets`, where the package metadata expects them.
//! Needs `cargo-deb`, `lintian`, `man-db`, `systemd` and `dpkg`
//! (scripts/test installs them); a missing tool fails, never skips. Only the
//! install/purge test needs root, and it says so when it skips.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use crate::systemd_unit;

const PKG: &str = "klosetd";
const STATE_DIR: &str = "/var/lib/klosetd";
const CONFFILE: &str = "/etc/klosetd/conf.d/00-daemon.toml";
const UNIT: &str = "/usr/lib/systemd/system/klosetd.service";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository root")
        .to_path_buf()
}

/// Runs a command to completion; a missing program fails with `hint`.
fn run(cmd: &mut Command, hint: &str) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!(
                "{cmd:?}: not installed ({hint}); scripts/test installs it, this test never skips"
            )
        }
        Err(e) => panic!("running {cmd:?}: {e}"),
    }
}

/// Runs a command and fails the test unless it succeeds; returns stdout.
fn ok(cmd: &mut Command, hint: &str) -> String {
    let out = run(cmd, hint);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The package built once for this test run: (temporary directory, .deb).
fn package() -> &'static Path {
    static DEB: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, deb) = DEB.get_or_init(|| {
        let bin = Path::new(env!("CARGO_BIN_EXE_klosetd"));
        let profile_dir = bin.parent().expect("the profile directory");
        assert_eq!(
            profile_dir.file_name().and_then(|n| n.to_str()),
            Some("debug"),
            "the package test packages the dev-profile binaries"
        );
        let target_dir = profile_dir.parent().expect("the target directory");
        xtask::write_package_assets(&repo(), &profile_dir.join("package-assets"))
            .expect("generate the man pages and completions");
        let out = tempfile::tempdir().expect("temp dir");
        let stdout = ok(
            Command::new("cargo-deb")
                .current_dir(repo())
                .env("CARGO_TARGET_DIR", target_dir)
                .args([
                    "-p",
                    PKG,
                    "--no-build",
                    "--profile",
                    "dev",
                    "--strip",
                    "--fast",
                    "-o",
                ])
                .arg(out.path()),
            "cargo install cargo-deb@3.8.0 --locked",
        );
        let deb = PathBuf::from(
            stdout
                .lines()
                .last()
                .expect("cargo-deb names the .deb")
                .trim(),
        );
        assert!(
            deb.is_file(),
            "cargo-deb printed {deb:?}, which is not a file"
        );
        (out, deb)
    });
    deb
}

#[test]
fn lintian_reports_no_error() {
    let out = run(
        Command::new("lintian")
            .args(["--fail-on", "error"])
            .arg(package()),
        "apt-get install lintian",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !stdout.lines().any(|l| l.starts_with("E: ")),
        "lintian found errors ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unpacked_package_runs_and_documents_itself() {
    let root = tempfile::tempdir().expect("temp dir");
    let root = root.path();
    ok(
        Command::new("dpkg-deb").arg("-x").arg(package()).arg(root),
        "dpkg",
    );
    let at = |p: &str| root.join(p.trim_start_matches('/'));

    // The binaries run.
    for bin in ["klosetd", "kloset"] {
        let version = ok(
            Command::new(at(&format!("/usr/bin/{bin}"))).arg("--version"),
            "packaged binary",
        );
        assert_eq!(
            version.trim(),
            format!("{bin} {}", env!("CARGO_PKG_VERSION"))
        );
    }

    // The unit is the repository's, and systemd accepts it with ExecStart
    // on the packaged binary.
    let unit = std::fs::read_to_string(at(UNIT)).expect("the packaged unit");
    let repo_unit =
        std::fs::read_to_string(repo().join("systemd/klosetd.service")).expect("the repo unit");
    assert_eq!(unit, repo_unit, "the package ships systemd/klosetd.service");
    let scratch = tempfile::tempdir().expect("temp dir");
    let copy = scratch.path().join("klosetd.service");
    let klosetd = at("/usr/bin/klosetd");
    std::fs::write(
        &copy,
        unit.replacen(
            "ExecStart=/usr/bin/klosetd ",
            &format!("ExecStart=\"{}\" ", klosetd.display()),
            1,
        ),
    )
    .expect("write the unit copy");
    let (verified, about_unit, stderr) = systemd_unit::verify(&copy);
    assert!(
        verified && about_unit.is_empty(),
        "systemd-analyze verify: {about_unit:#?}\n{stderr}"
    );

    // The conffile is valid on its own, and marked as a conffile.
    let conf_dir = at("/etc/klosetd/conf.d");
    let names: Vec<_> = std::fs::read_dir(&conf_dir)
        .expect("conf.d")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        names,
        ["00-daemon.toml"],
        "conf.d holds only the daemon file"
    );
    let validate = ok(
        Command::new(&klosetd).arg("validate").arg(&conf_dir),
        "packaged binary",
    );
    assert!(validate.contains("valid"), "{validate}");
    let control = tempfile::tempdir().expect("temp dir");
    ok(
        Command::new("dpkg-deb")
            .arg("-e")
            .arg(package())
            .arg(control.path()),
        "dpkg",
    );
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).expect("conffiles");
    assert_eq!(conffiles.lines().collect::<Vec<_>>(), [CONFFILE]);
    assert!(at("/usr/share/doc/klosetd/copyright").is_file());

    // Every man page renders without a groff warning, the three named ones too.
    let mut pages = Vec::new();
    for section in ["man1", "man5", "man8"] {
        for entry in std::fs::read_dir(at(&format!("/usr/share/man/{section}"))).expect("man dir") {
            pages.push(entry.expect("entry").path());
        }
    }
    for name in [
        "man8/klosetd.8.gz",
        "man1/kloset.1.gz",
        "man5/klosetd.conf.5.gz",
    ] {
        assert!(
            pages.contains(&at(&format!("/usr/share/man/{name}"))),
            "{name} missing"
        );
    }
    for page in &pages {
        let out = run(
            Command::new("man")
                .args(["--warnings", "-l"])
                .arg(page)
                .env("MANWIDTH", "80")
                .env("MAN_KEEP_FORMATTING", "0")
                .env("LC_ALL", "C.UTF-8"),
            "apt-get install man-db",
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty() && out.stdout.len() > 200,
            "man -l {}: {}\n{stderr}",
            page.display(),
            out.status
        );
    }

    // The completions are where the shells look, and each shell parses its own.
    for (dir, files) in [
        (
            "/usr/share/bash-completion/completions",
            ["klosetd", "kloset"],
        ),
        ("/usr/share/zsh/vendor-completions", ["_klosetd", "_kloset"]),
        (
            "/usr/share/fish/vendor_completions.d",
            ["klosetd.fish", "kloset.fish"],
        ),
    ] {
        for file in files {
            assert!(
                at(&format!("{dir}/{file}")).is_file(),
                "{dir}/{file} missing"
            );
        }
    }
    for file in ["klosetd", "kloset"] {
        let bash = at(&format!("/usr/share/bash-completion/completions/{file}"));
        let zsh = at(&format!("/usr/share/zsh/vendor-completions/_{file}"));
        let fish = at(&format!("/usr/share/fish/vendor_completions.d/{file}.fish"));
        ok(Command::new("bash").arg("-n").arg(&bash), "bash");
        ok(Command::new("zsh").arg("-n").arg(&zsh), "zsh");
        ok(Command::new("fish").arg("--no-execute").arg(&fish), "fish");
    }
    // Each shell completes the first word of `kloset ` to its subcommands.
    let bash = at("/usr/share/bash-completion/completions/kloset");
    let words = completions(
        Command::new("bash").arg("-c").arg(format!(
            "source '{}'; COMP_WORDS=(kloset ''); COMP_CWORD=1; \
             COMP_LINE='kloset '; COMP_POINT=7; _kloset kloset '' kloset; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            bash.display()
        )),
        "bash",
    );
    assert!(words.iter().any(|w| w == "at"), "bash completes {words:?}");
    let fish = at("/usr/share/fish/vendor_completions.d/kloset.fish");
    let words = completions(
        Command::new("fish").arg("-c").arg(format!(
            "source '{}'; complete -C 'kloset '",
            fish.display()
        )),
        "fish",
    );
    assert!(
        words.iter().any(|w| w.starts_with("at\t"))
            && words.iter().any(|w| w.starts_with("version\t")),
        "fish completes {words:?}"
    );
}

/// The lines a completion command prints.
fn completions(cmd: &mut Command, what: &str) -> Vec<String> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Purges the package when dropped, so a failed assertion leaves no install.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["-P", PKG]).output();
    }
}

/// `dpkg -i`, `dpkg -r` (state kept), `dpkg -P` (nothing left) on this
/// machine. Serialised: the only test that installs anything.
#[test]
fn install_remove_and_purge() {
    static DPKG: Mutex<()> = Mutex::new(());
    let _serial = DPKG.lock().unwrap_or_else(|e| e.into_inner());
    let uid = ok(Command::new("id").arg("-u"), "coreutils");
    if uid.trim() != "0" {
        eprintln!(
            "package::install_remove_and_purge SKIPPED: dpkg -i needs root (CI runs as root)"
        );
        return;
    }
    let status = run(
        Command::new("dpkg-query").args(["-W", "-f", "${Status}", PKG]),
        "dpkg",
    );
    assert!(
        !String::from_utf8_lossy(&status.stdout).contains("installed"),
        "klosetd is already installed on this machine; this test would replace it"
    );
    assert!(
        !Path::new(STATE_DIR).exists(),
        "{STATE_DIR} exists before the install"
    );

    // Which of the package's directories exist already (/usr, /etc, …).
    let listed = ok(Command::new("dpkg-deb").arg("-c").arg(package()), "dpkg");
    let existed: BTreeSet<PathBuf> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| PathBuf::from(p.trim_start_matches('.')))
        .filter(|p| p.exists())
        .collect();

    let _purge = Purge;
    ok(Command::new("dpkg").arg("-i").arg(package()), "dpkg");
    let files: Vec<PathBuf> = ok(Command::new("dpkg").args(["-L", PKG]), "dpkg")
        .lines()
        .map(PathBuf::from)
        .collect();
    assert!(files.contains(&PathBuf::from(UNIT)), "dpkg -L: {files:#?}");
    assert_eq!(
        std::fs::read_to_string(UNIT).expect("installed unit"),
        std::fs::read_to_string(repo().join("systemd/klosetd.service")).expect("repo unit")
    );
    let conffiles = ok(
        Command::new("dpkg-query").args(["-W", "-f", "${Conffiles}", PKG]),
        "dpkg",
    );
    assert!(conffiles.contains(CONFFILE), "conffiles: {conffiles}");
    let version = ok(
        Command::new("/usr/bin/klosetd").arg("--version"),
        "installed",
    );
    assert!(version.starts_with("klosetd "), "{version}");
    // The package neither enables nor starts the service.
    assert!(!Path::new("/etc/systemd/system/multi-user.target.wants/klosetd.service").exists());

    // State the daemon would have written.
    std::fs::create_dir_all(STATE_DIR).expect("state dir");
    std::fs::write(Path::new(STATE_DIR).join("state.db"), b"x").expect("state file");

    ok(Command::new("dpkg").args(["-r", PKG]), "dpkg");
    assert!(
        Path::new(STATE_DIR).join("state.db").is_file(),
        "remove keeps the state"
    );
    assert!(Path::new(CONFFILE).is_file(), "remove keeps the conffile");
    assert!(
        !Path::new("/usr/bin/klosetd").exists(),
        "remove deletes the binary"
    );

    ok(Command::new("dpkg").args(["-P", PKG]), "dpkg");
    assert!(!Path::new(STATE_DIR).exists(), "purge deletes {STATE_DIR}");
    let left: Vec<&PathBuf> = files
        .iter()
        .filter(|p| !existed.contains(*p) && p.symlink_metadata().is_ok())
        .collect();
    assert!(left.is_empty(), "left after dpkg -P: {left:#?}");
}

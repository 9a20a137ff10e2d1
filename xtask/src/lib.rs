//! Generated files of the Debian package: the man pages of `klosetd(8)` and
//! `kloset(1)` (one page per subcommand, as `clap_mangen` links them) and
//! their bash, zsh and fish completions, all from the clap definitions, and
//! `klosetd.conf(5)` converted from `docs/configuration.md`
//! ([`markdown_roff`]). Nothing here is written by hand, so the installed
//! documentation cannot drift from the binaries and the docs.

pub mod markdown_roff;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

/// The commands the package ships, with their man page section.
fn commands() -> [(clap::Command, &'static str); 2] {
    [
        (klosetd::daemon_cli::command(), "8"),
        (klosetd::cli::Cli::command(), "1"),
    ]
}

/// Writes `cmd`'s page and one page per visible subcommand (`klosetd-run(8)`,
/// `kloset-at-backup(1)`, …: the names clap_mangen's SUBCOMMANDS section
/// refers to) into `dir`, all in `section`.
fn write_man_pages(
    cmd: clap::Command,
    section: &str,
    dir: &Path,
    out: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
        write_man_pages(sub, section, dir, out)?;
    }
    let version = env!("CARGO_PKG_VERSION");
    let man = clap_mangen::Man::new(cmd)
        .section(section)
        .date(page_date()?)
        .source(format!("klosetd {version}"))
        .manual(if section == "8" {
            "System Administration"
        } else {
            "User Commands"
        });
    let path = man
        .generate_to(dir)
        .with_context(|| format!("writing a man page into {}", dir.display()))?;
    out.push(path);
    Ok(())
}

/// The date in the pages' title lines: `SOURCE_DATE_EPOCH` (seconds, as
/// `scripts/package` sets it from the last commit, for a reproducible
/// package), else today.
pub fn page_date() -> anyhow::Result<String> {
    let time = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(secs) => {
            let secs: i64 = secs
                .trim()
                .parse()
                .with_context(|| format!("SOURCE_DATE_EPOCH={secs:?} is not a number"))?;
            chrono::DateTime::from_timestamp(secs, 0)
                .with_context(|| format!("SOURCE_DATE_EPOCH={secs} is out of range"))?
        }
        Err(_) => chrono::Utc::now(),
    };
    Ok(time.format("%Y-%m-%d").to_string())
}

/// `klosetd.conf(5)` from the markdown of `docs/configuration.md`.
pub fn configuration_page(markdown: &str) -> anyhow::Result<String> {
    markdown_roff::convert(
        markdown,
        &markdown_roff::Page {
            name: "klosetd.conf",
            section: "5",
            date: &page_date()?,
            summary: "configuration directory of klosetd",
            source: &format!("klosetd {}", env!("CARGO_PKG_VERSION")),
            manual: "File Formats",
            see_also: &[("klosetd", "8"), ("kloset", "1")],
        },
    )
}

/// `gzip -9n PATH` (gzip is an Essential package on Debian): `-n` leaves
/// out the name and time, so the result is reproducible. PATH becomes PATH.gz.
fn gzip(path: &mut PathBuf) -> anyhow::Result<()> {
    let status = std::process::Command::new("gzip")
        .args(["-9nf", "--"])
        .arg(&*path)
        .status()
        .with_context(|| format!("running gzip on {}", path.display()))?;
    if !status.success() {
        anyhow::bail!("gzip {} failed: {status}", path.display());
    }
    let mut gz = path.clone().into_os_string();
    gz.push(".gz");
    *path = PathBuf::from(gz);
    Ok(())
}

/// Writes every generated file of the package under `out` (emptied first,
/// so a removed subcommand leaves no stale page): `man/` holds the pages (gzipped),
/// `completions/{bash,zsh,fish}/` the completions under the names each
/// shell looks for. `repo` is the workspace root. Returns the files written.
pub fn write_package_assets(repo: &Path, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if out.exists() {
        fs::remove_dir_all(out).with_context(|| format!("emptying {}", out.display()))?;
    }
    let man = out.join("man");
    fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    let mut written = Vec::new();
    for (cmd, section) in commands() {
        write_man_pages(cmd, section, &man, &mut written)?;
    }
    let config_md = repo.join("docs/configuration.md");
    let markdown = fs::read_to_string(&config_md)
        .with_context(|| format!("reading {}", config_md.display()))?;
    let page = configuration_page(&markdown)
        .with_context(|| format!("converting {} to roff", config_md.display()))?;
    let conf = man.join("klosetd.conf.5");
    fs::write(&conf, page).with_context(|| format!("writing {}", conf.display()))?;
    written.push(conf);
    // Debian policy: man pages compressed with gzip -9n (cargo-deb compresses
    // only files that are not under target/).
    for page in written.iter_mut() {
        gzip(page)?;
    }

    for (shell, dir, file) in [
        (Shell::Bash, "bash", "{}"),
        (Shell::Zsh, "zsh", "_{}"),
        (Shell::Fish, "fish", "{}.fish"),
    ] {
        let dir = out.join("completions").join(dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (mut cmd, _) in commands() {
            let name = cmd.get_name().to_string();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, &name, &mut script);
            let path = dir.join(file.replace("{}", &name));
            fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}

//! `xtask package-assets OUT`: writes the generated files of the Debian
//! package (man pages, shell completions) into OUT. `scripts/package` runs
//! it before `cargo deb`; it is a build tool and is not in the package.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [command, out] = args.as_slice() else {
        bail!("usage: xtask package-assets OUT_DIR");
    };
    if command != "package-assets" {
        bail!("unknown command {command:?}; usage: xtask package-assets OUT_DIR");
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask/ has no parent directory")?
        .to_path_buf();
    let written = xtask::write_package_assets(&repo, &PathBuf::from(out))?;
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

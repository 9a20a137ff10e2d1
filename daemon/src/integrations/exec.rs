//! `exec`: a command's standard output backed up as one file of the
//! snapshot, and a restored file piped into a command. Needs no resource or
//! location: `command = ["program", "arg", …]` on the app is the place.

use std::path::PathBuf;
use std::sync::Arc;

use kloset_connectors::command::{CommandExporter, CommandFile, CommandImporter, CommandSpec};

use super::place::Place;
use super::seam::{
    AppInput, Connector, Integration, NotConnected, ParseError, Parsed, Policies, RestorePick,
    RestoreTarget, Role,
};

/// The `exec` integration.
#[derive(Debug)]
pub struct Exec;

impl Integration for Exec {
    fn name(&self) -> &'static str {
        "exec"
    }
    fn classes(&self) -> &'static [(&'static str, &'static str)] {
        &[("command", "exec")]
    }
    fn schemes(&self) -> &'static [&'static str] {
        &[]
    }
    fn protocols(&self) -> &'static [&'static str] {
        &["exec"]
    }
    fn roles(&self) -> &'static [Role] {
        &[Role::Source, Role::Destination]
    }
    fn resource_keys(&self) -> &'static [&'static str] {
        &[]
    }
    fn app_keys(&self, role: Role) -> &'static [&'static str] {
        match role {
            Role::Source => &["command", "file"],
            _ => &["command"],
        }
    }
    fn connector(&self, input: &AppInput<'_>) -> Result<Parsed, Vec<ParseError>> {
        let err = |m: String| vec![ParseError::App(m)];
        let argv: Vec<String> = match input.app.get("command") {
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        if argv.first().is_none_or(|p| p.is_empty()) {
            return Err(err(
                "the exec integration needs `command = [\"program\", \"arg\", …]`".into(),
            ));
        }
        let file = match input.app.get("file") {
            None => format!("{}.out", input.name),
            Some(toml::Value::String(f)) if kloset::tree::is_safe_name(f.as_bytes()) => f.clone(),
            Some(other) => {
                return Err(err(format!(
                    "file = {other} must be one file name (no `/`, not `.` or `..`)"
                )));
            }
        };
        let Some((program, args)) = argv.split_first() else {
            return Err(err("the exec integration needs a program".into()));
        };
        Ok(Parsed {
            location: format!("exec:{program}"),
            connector: Arc::new(ExecConnector {
                program: program.clone(),
                args: args.to_vec(),
                file,
            }),
        })
    }
}

/// A command.
#[derive(Debug)]
struct ExecConnector {
    program: String,
    args: Vec<String>,
    /// The name its output gets in a snapshot (sources).
    file: String,
}

impl ExecConnector {
    fn spec(&self) -> CommandSpec {
        CommandSpec::new(&self.program).args(self.args.iter().cloned())
    }

    fn location(&self) -> String {
        format!("exec:{}", self.program)
    }
}

impl Connector for ExecConnector {
    fn settings(&self) -> serde_json::Value {
        let mut argv = vec![self.program.clone()];
        argv.extend(self.args.iter().cloned());
        serde_json::json!({ "command": argv, "file": self.file })
    }

    fn place(&self) -> Option<Place> {
        None
    }

    fn policies(&self) -> Policies {
        Policies {
            // A command's output is useless when cut short.
            all_or_nothing: true,
            restore: RestorePick::OneFile(|_| true),
        }
    }

    fn test(&self, _: Role) -> Result<&'static str, NotConnected> {
        executable(&self.program)
    }

    fn importer(&self) -> Result<Box<dyn kloset::import::Importer>, String> {
        Ok(Box::new(CommandImporter::new(
            self.location(),
            vec![CommandFile {
                name: self.file.clone(),
                command: self.spec(),
            }],
        )))
    }

    fn restore_target(&self, _: Option<&str>) -> Result<RestoreTarget, String> {
        Ok(RestoreTarget::Exporter(Box::new(CommandExporter::new(
            self.location(),
            self.spec(),
        ))))
    }
}

/// The program is found (on `PATH` for a name without `/`) and executable.
fn executable(program: &str) -> Result<&'static str, NotConnected> {
    use std::os::unix::fs::PermissionsExt;
    let candidates: Vec<PathBuf> = if program.contains('/') {
        vec![PathBuf::from(program)]
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(program)).collect())
            .unwrap_or_default()
    };
    for c in &candidates {
        if let Ok(meta) = std::fs::metadata(c)
            && meta.is_file()
        {
            return if meta.permissions().mode() & 0o111 != 0 {
                Ok("Executable")
            } else {
                Err(NotConnected::new(
                    "PermissionDenied",
                    format!("{} is not executable", c.display()),
                ))
            };
        }
    }
    Err(NotConnected::new(
        "NotFound",
        format!("command {program:?} was not found (PATH is searched for names without `/`)"),
    ))
}

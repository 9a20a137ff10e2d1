//! Where a store, source or destination is: the app table's `resource` or
//! `location` handed to the integration that serves it, which parses its
//! own keys into a typed endpoint. Errors land at the app's or the
//! resource's `file:line`.

use super::desired::Endpoint;
use super::load::{Located, RawConfig};
use super::validate::Ctx;
use crate::integrations::select::{AppDecl, ResourceDecl};
use crate::integrations::{self, ParseError, Role};

/// What an app table says about where it is.
#[derive(Clone, Copy, Debug)]
pub(super) struct Wanted<'a> {
    pub role: Role,
    pub name: &'a str,
    pub resource: Option<&'a str>,
    pub location: Option<&'a str>,
    pub integration: Option<&'a str>,
    pub protocol: Option<&'a str>,
    /// The keys the integration reads.
    pub placement: &'a toml::Table,
}

pub(super) fn endpoint<T>(
    cx: &mut Ctx,
    raw: &RawConfig,
    l: &Located<T>,
    object: &str,
    w: Wanted<'_>,
) -> Option<Endpoint> {
    let resource = match w.resource {
        None => None,
        Some(name) => {
            let Some(r) = raw.resources.get(name) else {
                let known: Vec<&String> = raw.resources.keys().collect();
                cx.err(
                    l,
                    object,
                    format!("unknown resource {name:?} (declared: {known:?})"),
                );
                return None;
            };
            Some((name, r))
        }
    };
    let decl = AppDecl {
        role: w.role,
        name: w.name,
        file: &l.file,
        resource: resource.map(|(name, r)| ResourceDecl {
            name,
            class: &r.value.class,
            subclass: &r.value.subclass,
            table: &r.value.connection,
            file: &r.file,
        }),
        location: w.location,
        integration: w.integration,
        protocol: w.protocol,
        keys: w.placement,
    };
    match integrations::endpoint(&decl) {
        Ok(e) => Some(e),
        Err(errors) => {
            for e in errors {
                match (e, resource) {
                    (ParseError::Resource(m), Some((name, r))) => {
                        cx.err(r, &format!("resource.{name}"), m);
                    }
                    (ParseError::ResourceKey(key, m), Some((name, r))) => {
                        cx.err_at(r, r.line_of_key(&key), &format!("resource.{name}"), m);
                    }
                    (ParseError::AppKey(key, m), _) => cx.err_at(l, l.line_of_key(&key), object, m),
                    (e, _) => cx.err(l, object, e.message()),
                }
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exec_through_a_resource_keeps_its_command_and_locations_never_hold_passwords() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(
            dir.path().join("a.toml"),
            r#"
[resource.dumper]
class = "command"
subclass = "exec"

[source.dump]
resource = "dumper"
command = ["sh", "-c", "echo hi"]
file = "hi.txt"
"#,
        )
        .expect("write");
        let state =
            crate::config::load_and_validate(dir.path()).unwrap_or_else(|e| panic!("{e:?}"));
        let e = &state.sources["dump"].endpoint;
        assert_eq!(e.integration, "exec");
        assert_eq!(
            e.connector().settings(),
            serde_json::json!({"command": ["sh", "-c", "echo hi"], "file": "hi.txt"})
        );
        std::fs::write(
            dir.path().join("a.toml"),
            "[source.db]\nlocation = \"postgresql://u:secret@db/x\"\nprotocol = \"pg_dump\"\n",
        )
        .expect("write");
        let errors = crate::config::load_and_validate(dir.path()).expect_err("password");
        let text = format!("{errors:?}");
        assert!(
            text.contains("never holds a password") && !text.contains("secret@"),
            "{text}"
        );
    }
}

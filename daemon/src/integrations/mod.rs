//! The registry of built-in integrations: which resource classes each one
//! serves, its protocols, and which connectors (source, destination, store)
//! it provides. Selection follows the seeds: one compatible integration is
//! chosen automatically, several need `integration = …`, none is an error
//! listing what exists.

pub mod connect;
pub mod postgresql;

/// A connector role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Backs data up (importer).
    Source,
    /// Receives restores (exporter).
    Destination,
    /// Holds a Kloset store.
    Store,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Destination => "destination",
            Role::Store => "store",
        }
    }
}

/// A built-in integration.
#[derive(Debug)]
pub struct Integration {
    /// Its name, as written in `integration = …`.
    pub name: &'static str,
    /// `(class, subclass)` pairs it serves.
    pub classes: &'static [(&'static str, &'static str)],
    /// Protocols; more than one means `protocol = …` is required.
    pub protocols: &'static [&'static str],
    /// Roles it provides.
    pub roles: &'static [Role],
}

/// Every integration built into this klosetd.
pub const BUILTIN: &[Integration] = &[
    Integration {
        name: "fs",
        classes: &[("filesystem", "local")],
        protocols: &["fs"],
        roles: &[Role::Source, Role::Destination, Role::Store],
    },
    Integration {
        name: "s3",
        classes: &[("object-storage", "s3")],
        protocols: &["s3"],
        roles: &[Role::Store],
    },
];

/// Names of the integrations that provide `role`.
pub fn names_with(role: Role) -> Vec<&'static str> {
    BUILTIN
        .iter()
        .filter(|i| i.roles.contains(&role))
        .map(|i| i.name)
        .collect()
}

/// Picks the integration and protocol for a resource of `class`/`subclass`
/// used in `role`, honouring an explicit `integration` and `protocol`.
pub fn resolve(
    class: &str,
    subclass: &str,
    role: Role,
    integration: Option<&str>,
    protocol: Option<&str>,
) -> Result<(&'static Integration, &'static str), String> {
    let candidates: Vec<&Integration> = BUILTIN
        .iter()
        .filter(|i| i.roles.contains(&role) && i.classes.contains(&(class, subclass)))
        .collect();
    let chosen = match (integration, candidates.as_slice()) {
        (Some(name), _) => match candidates.iter().find(|i| i.name == name) {
            Some(i) => *i,
            None => {
                return Err(format!(
                    "integration {name:?} cannot serve a {class}/{subclass} resource as a {}; compatible: {}",
                    role.as_str(),
                    list(&candidates)
                ));
            }
        },
        (None, [one]) => *one,
        (None, []) => {
            let available: Vec<String> = BUILTIN
                .iter()
                .filter(|i| i.roles.contains(&role))
                .flat_map(|i| {
                    i.classes
                        .iter()
                        .map(move |(c, s)| format!("{c}/{s} ({})", i.name))
                })
                .collect();
            return Err(format!(
                "no integration supports class {class:?} subclass {subclass:?} as a {}; available: {}",
                role.as_str(),
                available.join(", ")
            ));
        }
        (None, many) => {
            return Err(format!(
                "several integrations support {class}/{subclass}: {}; choose one with integration = \"…\"",
                list(many)
            ));
        }
    };
    let protocol = match (protocol, chosen.protocols) {
        (Some(p), protocols) => protocols
            .iter()
            .find(|x| **x == p)
            .copied()
            .ok_or_else(|| {
                format!(
                    "integration {} has no protocol {p:?}; it offers: {}",
                    chosen.name,
                    protocols.join(", ")
                )
            })?,
        (None, [one]) => *one,
        (None, protocols) => {
            return Err(format!(
                "integration {} offers several protocols ({}); choose one with protocol = \"…\"",
                chosen.name,
                protocols.join(", ")
            ));
        }
    };
    Ok((chosen, protocol))
}

fn list(items: &[&Integration]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items.iter().map(|i| i.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_rules() {
        let (i, p) = resolve("filesystem", "local", Role::Store, None, None).expect("one");
        assert_eq!((i.name, p), ("fs", "fs"));
        let e = resolve("database", "oracle", Role::Source, None, None).expect_err("none");
        assert!(
            e.contains("database") && e.contains("oracle") && e.contains("filesystem/local"),
            "{e}"
        );
        let e = resolve("filesystem", "local", Role::Store, Some("s3"), None).expect_err("wrong");
        assert!(e.contains("compatible: fs"), "{e}");
        let e =
            resolve("filesystem", "local", Role::Store, None, Some("nfs")).expect_err("protocol");
        assert!(e.contains("no protocol"), "{e}");
        let e = resolve("object-storage", "s3", Role::Source, None, None).expect_err("role");
        assert!(e.contains("as a source"), "{e}");
    }
}

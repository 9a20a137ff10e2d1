//! The registry of built-in integrations: which resource classes each one
//! serves, its protocols, and which connectors (source, destination, store)
//! it provides. Selection follows the seeds: one compatible integration is
//! chosen automatically, several need `integration = …`, none is an error
//! listing what exists.

pub mod connect;
pub mod connectors;
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
///
/// `filesystem/nas` is served by two integrations on purpose: a NAS can be
/// read through its local mount point (`fs`) or over SSH (`sftp`), so a
/// NAS resource must say which with `integration = …`.
pub const BUILTIN: &[Integration] = &[
    Integration {
        name: "fs",
        classes: &[("filesystem", "local"), ("filesystem", "nas")],
        protocols: &["fs"],
        roles: &[Role::Source, Role::Destination, Role::Store],
    },
    Integration {
        name: "s3",
        classes: &[
            ("object-storage", "s3"),
            ("object-storage", "minio"),
            ("object-storage", "ceph"),
            ("object-storage", "garage"),
        ],
        protocols: &["s3"],
        roles: &[Role::Source, Role::Destination, Role::Store],
    },
    Integration {
        name: "sftp",
        classes: &[
            ("filesystem", "sftp"),
            ("filesystem", "nas"),
            ("server", "ssh"),
        ],
        protocols: &["sftp"],
        roles: &[Role::Source, Role::Destination, Role::Store],
    },
    Integration {
        name: "postgresql",
        classes: &[("database", "postgresql")],
        protocols: &["pg_dump", "pg_dumpall"],
        roles: &[Role::Source, Role::Destination],
    },
    Integration {
        name: "exec",
        classes: &[("command", "exec")],
        protocols: &["exec"],
        roles: &[Role::Source, Role::Destination],
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
    resolve_in(BUILTIN, class, subclass, role, integration, protocol)
}

/// [`resolve`] over any registry (tests use made-up ones).
pub fn resolve_in<'r>(
    registry: &'r [Integration],
    class: &str,
    subclass: &str,
    role: Role,
    integration: Option<&str>,
    protocol: Option<&str>,
) -> Result<(&'r Integration, &'static str), String> {
    let candidates: Vec<&Integration> = registry
        .iter()
        .filter(|i| i.roles.contains(&role) && i.classes.contains(&(class, subclass)))
        .collect();
    let chosen = match (integration, candidates.as_slice()) {
        (Some(name), _) => match candidates.iter().find(|i| i.name == name) {
            Some(i) => *i,
            None if !registry.iter().any(|i| i.name == name) => {
                return Err(format!(
                    "unknown integration {name:?}; built in: {}",
                    registry
                        .iter()
                        .map(|i| i.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
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
            let available: Vec<String> = registry
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

    /// `Ok("integration/protocol")` or `Err(words the message must contain)`.
    type Want = Result<&'static str, &'static [&'static str]>;
    /// class, subclass, role, integration, protocol, expected.
    type Case = (
        &'static str,
        &'static str,
        Role,
        Option<&'static str>,
        Option<&'static str>,
        Want,
    );

    #[test]
    fn resolution_rules_of_the_built_in_registry() {
        let cases: &[Case] = &[
            ("filesystem", "local", Role::Store, None, None, Ok("fs/fs")),
            (
                "object-storage",
                "s3",
                Role::Source,
                None,
                None,
                Ok("s3/s3"),
            ),
            (
                "object-storage",
                "minio",
                Role::Destination,
                None,
                None,
                Ok("s3/s3"),
            ),
            ("server", "ssh", Role::Store, None, None, Ok("sftp/sftp")),
            (
                "filesystem",
                "nas",
                Role::Source,
                None,
                None,
                Err(&["several integrations", "fs, sftp", "integration = "]),
            ),
            (
                "filesystem",
                "nas",
                Role::Source,
                Some("sftp"),
                None,
                Ok("sftp/sftp"),
            ),
            (
                "filesystem",
                "nas",
                Role::Source,
                Some("fs"),
                None,
                Ok("fs/fs"),
            ),
            (
                "database",
                "postgresql",
                Role::Source,
                None,
                None,
                Err(&["several protocols", "pg_dump, pg_dumpall", "protocol = "]),
            ),
            (
                "database",
                "postgresql",
                Role::Source,
                None,
                Some("pg_dump"),
                Ok("postgresql/pg_dump"),
            ),
            (
                "database",
                "postgresql",
                Role::Destination,
                None,
                Some("pg_dumpall"),
                Ok("postgresql/pg_dumpall"),
            ),
            (
                "database",
                "postgresql",
                Role::Source,
                None,
                Some("mysqldump"),
                Err(&["no protocol \"mysqldump\"", "pg_dump, pg_dumpall"]),
            ),
            (
                "database",
                "postgresql",
                Role::Store,
                None,
                None,
                Err(&[
                    "no integration supports",
                    "database",
                    "postgresql",
                    "as a store",
                    "filesystem/local (fs)",
                ]),
            ),
            (
                "database",
                "oracle",
                Role::Source,
                None,
                None,
                Err(&[
                    "no integration supports",
                    "\"oracle\"",
                    "database/postgresql (postgresql)",
                ]),
            ),
            (
                "filesystem",
                "local",
                Role::Store,
                Some("s3"),
                None,
                Err(&[
                    "cannot serve a filesystem/local resource as a store",
                    "compatible: fs",
                ]),
            ),
            (
                "filesystem",
                "local",
                Role::Store,
                Some("nfs"),
                None,
                Err(&[
                    "unknown integration \"nfs\"",
                    "fs, s3, sftp, postgresql, exec",
                ]),
            ),
            (
                "filesystem",
                "local",
                Role::Store,
                None,
                Some("nfs"),
                Err(&["no protocol \"nfs\""]),
            ),
            ("command", "exec", Role::Source, None, None, Ok("exec/exec")),
        ];
        for (class, subclass, role, integration, protocol, want) in cases {
            let got = resolve(class, subclass, *role, *integration, *protocol)
                .map(|(i, p)| format!("{}/{p}", i.name));
            match (want, &got) {
                (Ok(w), Ok(g)) => assert_eq!(w, g, "{class}/{subclass}"),
                (Err(words), Err(msg)) => {
                    for w in *words {
                        assert!(msg.contains(w), "{class}/{subclass}: {msg:?} lacks {w:?}");
                    }
                }
                _ => panic!(
                    "{class}/{subclass} {integration:?} {protocol:?}: want {want:?}, got {got:?}"
                ),
            }
        }
    }

    #[test]
    fn several_candidates_and_protocols_in_a_made_up_registry() {
        const REG: &[Integration] = &[
            Integration {
                name: "alpha",
                classes: &[("vm", "kvm")],
                protocols: &["qmp", "ssh", "nbd"],
                roles: &[Role::Source],
            },
            Integration {
                name: "beta",
                classes: &[("vm", "kvm"), ("vm", "xen")],
                protocols: &["xapi"],
                roles: &[Role::Source, Role::Destination],
            },
        ];
        let e = resolve_in(REG, "vm", "kvm", Role::Source, None, None).expect_err("several");
        assert!(e.contains("alpha, beta"), "{e}");
        let (i, p) = resolve_in(REG, "vm", "kvm", Role::Destination, None, None).expect("one fits");
        assert_eq!((i.name, p), ("beta", "xapi"));
        let e = resolve_in(REG, "vm", "kvm", Role::Source, Some("alpha"), None).expect_err("proto");
        assert!(e.contains("qmp, ssh, nbd"), "{e}");
        let (i, p) =
            resolve_in(REG, "vm", "kvm", Role::Source, Some("alpha"), Some("nbd")).expect("chosen");
        assert_eq!((i.name, p), ("alpha", "nbd"));
        let (i, _) = resolve_in(REG, "vm", "xen", Role::Source, None, None).expect("only beta");
        assert_eq!(i.name, "beta");
    }
}

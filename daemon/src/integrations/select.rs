//! Choosing an integration: by a resource's class and subclass, by a
//! location's scheme, or for an app with neither (a command). One
//! compatible integration is chosen automatically, several need
//! `integration = …`, none is an error listing what exists; the same for
//! protocols. Then the chosen integration parses the app.

use std::path::Path;

use super::seam::{AppInput, Base, Endpoint, Integration, ParseError, Role};

/// A resource as an app sees it.
#[derive(Debug)]
pub struct ResourceDecl<'a> {
    /// Its name.
    pub name: &'a str,
    /// e.g. `object-storage`.
    pub class: &'a str,
    /// e.g. `minio`.
    pub subclass: &'a str,
    /// Its keys other than `class` and `subclass`.
    pub table: &'a toml::Table,
    /// Its file.
    pub file: &'a Path,
}

/// What an app table declares about where it works.
#[derive(Debug)]
pub struct AppDecl<'a> {
    /// Its role.
    pub role: Role,
    /// Its name.
    pub name: &'a str,
    /// Its file.
    pub file: &'a Path,
    /// `resource = …`, resolved.
    pub resource: Option<ResourceDecl<'a>>,
    /// `location = …`.
    pub location: Option<&'a str>,
    /// `integration = …`.
    pub integration: Option<&'a str>,
    /// `protocol = …`.
    pub protocol: Option<&'a str>,
    /// Its other keys, for the integration.
    pub keys: &'a toml::Table,
}

/// Parses an app into its endpoint through the integration that serves it.
pub fn endpoint(
    registry: &[&'static dyn Integration],
    d: &AppDecl<'_>,
) -> Result<Endpoint, Vec<ParseError>> {
    let app_err = |m: String| vec![ParseError::App(m)];
    let (integration, protocol) = match (&d.resource, d.location) {
        (Some(_), Some(_)) => {
            return Err(app_err(
                "give either `resource` or `location`, not both".into(),
            ));
        }
        (Some(r), None) => resolve_in(
            registry,
            r.class,
            r.subclass,
            d.role,
            d.integration,
            d.protocol,
        )
        .map_err(|e| app_err(format!("resource {:?}: {e}", r.name)))?,
        (None, Some(loc)) => by_scheme(registry, loc, d.role, d.integration, d.protocol)
            .map_err(|e| app_err(format!("location {loc:?}: {e}")))?,
        (None, None) => standalone(registry, d)?,
    };
    let mut errors = Vec::new();
    for key in d.keys.keys() {
        if integration.app_keys(d.role).contains(&key.as_str()) {
            continue;
        }
        let owner = registry.iter().find(|i| {
            [Role::Source, Role::Destination, Role::Store]
                .iter()
                .any(|r| i.app_keys(*r).contains(&key.as_str()))
        });
        errors.push(match owner {
            // A key of another integration: the choice of integration (at
            // the table) is what is wrong.
            Some(o) if o.name() != integration.name() => ParseError::App(format!(
                "`{key}` belongs to the {} integration, not {}",
                o.name(),
                integration.name()
            )),
            _ => ParseError::AppKey(
                key.clone(),
                format!(
                    "unknown field `{key}` for a {} {}{}",
                    integration.name(),
                    d.role.as_str(),
                    keys_hint(integration.app_keys(d.role))
                ),
            ),
        });
    }
    let own_keys = |table: &toml::Table, allowed: &[&str]| -> toml::Table {
        table
            .iter()
            .filter(|(k, _)| allowed.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let resource_table;
    let base = match (&d.resource, d.location) {
        (Some(r), _) => {
            // A resource served by several integrations (a NAS: fs or sftp)
            // may hold the keys of each; a key none of them reads is wrong.
            let serving: Vec<&&dyn Integration> = registry
                .iter()
                .filter(|i| i.classes().contains(&(r.class, r.subclass)))
                .collect();
            for key in r.table.keys() {
                if !serving
                    .iter()
                    .any(|i| i.resource_keys().contains(&key.as_str()))
                {
                    errors.push(ParseError::ResourceKey(
                        key.clone(),
                        format!(
                            "unknown field `{key}` for a {}/{} resource{}",
                            r.class,
                            r.subclass,
                            keys_hint(integration.resource_keys())
                        ),
                    ));
                }
            }
            resource_table = own_keys(r.table, integration.resource_keys());
            Base::Resource {
                table: &resource_table,
                file: r.file,
            }
        }
        (None, Some(loc)) => Base::Location(loc),
        (None, None) => Base::Nothing,
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let app = own_keys(d.keys, integration.app_keys(d.role));
    let parsed = integration.connector(&AppInput {
        role: d.role,
        protocol,
        name: d.name,
        app: &app,
        app_file: d.file,
        base,
    })?;
    Ok(Endpoint::new(
        integration,
        protocol,
        d.resource.as_ref().map(|r| r.name.to_string()),
        parsed,
    ))
}

fn keys_hint(keys: &[&str]) -> String {
    if keys.is_empty() {
        " (it takes none)".into()
    } else {
        format!(" (it takes: {})", keys.join(", "))
    }
}

/// An app with neither `resource` nor `location`: an integration that needs
/// no connection (a command), named or recognised by its keys.
fn standalone(
    registry: &[&'static dyn Integration],
    d: &AppDecl<'_>,
) -> Result<(&'static dyn Integration, &'static str), Vec<ParseError>> {
    let candidates: Vec<&'static dyn Integration> = registry
        .iter()
        .copied()
        .filter(|i| i.schemes().is_empty() && i.roles().contains(&d.role))
        .filter(|i| match d.integration {
            Some(name) => i.name() == name,
            None => d
                .keys
                .keys()
                .any(|k| i.app_keys(d.role).contains(&k.as_str())),
        })
        .collect();
    match candidates.as_slice() {
        [one] => {
            let protocol = pick_protocol(*one, d.protocol).map_err(|e| vec![ParseError::App(e)])?;
            Ok((*one, protocol))
        }
        _ => Err(vec![ParseError::App(
            "`resource` or `location` is required".into(),
        )]),
    }
}

/// Picks the integration for a location by its scheme (`""` for a path).
pub fn by_scheme(
    registry: &[&'static dyn Integration],
    location: &str,
    role: Role,
    integration: Option<&str>,
    protocol: Option<&str>,
) -> Result<(&'static dyn Integration, &'static str), String> {
    let scheme = location.split_once("://").map_or("", |(s, _)| s);
    let serving: Vec<&'static dyn Integration> = registry
        .iter()
        .copied()
        .filter(|i| i.schemes().contains(&scheme))
        .collect();
    let Some(first) = serving.first() else {
        let known: Vec<String> = registry
            .iter()
            .flat_map(|i| i.schemes().iter())
            .filter(|s| !s.is_empty())
            .map(|s| format!("{s}://"))
            .collect();
        return Err(format!(
            "unknown scheme {scheme:?} (use a path or one of: {})",
            known.join(", ")
        ));
    };
    let (class, subclass) = first.classes().first().copied().unwrap_or(("", ""));
    let chosen: Vec<&'static dyn Integration> = serving
        .into_iter()
        .filter(|i| i.roles().contains(&role))
        .collect();
    match (integration, chosen.as_slice()) {
        (Some(name), found) => match found.iter().find(|i| i.name() == name) {
            Some(i) => Ok((*i, pick_protocol(*i, protocol)?)),
            None => resolve_in(registry, class, subclass, role, Some(name), protocol),
        },
        (None, [one]) => Ok((*one, pick_protocol(*one, protocol)?)),
        (None, _) => resolve_in(registry, class, subclass, role, None, protocol),
    }
}

/// Picks the integration and protocol for a resource of `class`/`subclass`
/// used in `role`, honouring an explicit `integration` and `protocol`.
pub fn resolve_in(
    registry: &[&'static dyn Integration],
    class: &str,
    subclass: &str,
    role: Role,
    integration: Option<&str>,
    protocol: Option<&str>,
) -> Result<(&'static dyn Integration, &'static str), String> {
    let candidates: Vec<&'static dyn Integration> = registry
        .iter()
        .copied()
        .filter(|i| i.roles().contains(&role) && i.classes().contains(&(class, subclass)))
        .collect();
    let chosen = match (integration, candidates.as_slice()) {
        (Some(name), _) => match candidates.iter().find(|i| i.name() == name) {
            Some(i) => *i,
            None if !registry.iter().any(|i| i.name() == name) => {
                return Err(format!(
                    "unknown integration {name:?}; built in: {}",
                    registry
                        .iter()
                        .map(|i| i.name())
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
                .filter(|i| i.roles().contains(&role))
                .flat_map(|i| {
                    i.classes()
                        .iter()
                        .map(move |(c, s)| format!("{c}/{s} ({})", i.name()))
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
    Ok((chosen, pick_protocol(chosen, protocol)?))
}

fn pick_protocol(chosen: &dyn Integration, protocol: Option<&str>) -> Result<&'static str, String> {
    match (protocol, chosen.protocols()) {
        (Some(p), protocols) => protocols.iter().find(|x| **x == p).copied().ok_or_else(|| {
            format!(
                "integration {} has no protocol {p:?}; it offers: {}",
                chosen.name(),
                protocols.join(", ")
            )
        }),
        (None, [one]) => Ok(*one),
        (None, protocols) => Err(format!(
            "integration {} offers several protocols ({}); choose one with protocol = \"…\"",
            chosen.name(),
            protocols.join(", ")
        )),
    }
}

fn list(items: &[&'static dyn Integration]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(|i| i.name())
        .collect::<Vec<_>>()
        .join(", ")
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
            let got = resolve_in(
                super::super::REGISTRY,
                class,
                subclass,
                *role,
                *integration,
                *protocol,
            )
            .map(|(i, p)| format!("{}/{p}", i.name()));
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

    /// A made-up integration for registry tests.
    #[derive(Debug)]
    struct Fake {
        name: &'static str,
        classes: &'static [(&'static str, &'static str)],
        protocols: &'static [&'static str],
        roles: &'static [Role],
    }

    impl Integration for Fake {
        fn name(&self) -> &'static str {
            self.name
        }
        fn classes(&self) -> &'static [(&'static str, &'static str)] {
            self.classes
        }
        fn schemes(&self) -> &'static [&'static str] {
            &[]
        }
        fn protocols(&self) -> &'static [&'static str] {
            self.protocols
        }
        fn roles(&self) -> &'static [Role] {
            self.roles
        }
        fn resource_keys(&self) -> &'static [&'static str] {
            &[]
        }
        fn app_keys(&self, _: Role) -> &'static [&'static str] {
            &[]
        }
        fn connector(
            &self,
            _: &AppInput<'_>,
        ) -> Result<super::super::seam::Parsed, Vec<ParseError>> {
            Err(vec![ParseError::App("made up".into())])
        }
    }

    #[test]
    fn several_candidates_and_protocols_in_a_made_up_registry() {
        static ALPHA: Fake = Fake {
            name: "alpha",
            classes: &[("vm", "kvm")],
            protocols: &["qmp", "ssh", "nbd"],
            roles: &[Role::Source],
        };
        static BETA: Fake = Fake {
            name: "beta",
            classes: &[("vm", "kvm"), ("vm", "xen")],
            protocols: &["xapi"],
            roles: &[Role::Source, Role::Destination],
        };
        let reg: &[&'static dyn Integration] = &[&ALPHA, &BETA];
        let name = |x: (&'static dyn Integration, &'static str)| (x.0.name(), x.1);
        let e = resolve_in(reg, "vm", "kvm", Role::Source, None, None).expect_err("several");
        assert!(e.contains("alpha, beta"), "{e}");
        let got = resolve_in(reg, "vm", "kvm", Role::Destination, None, None).expect("one fits");
        assert_eq!(name(got), ("beta", "xapi"));
        let e = resolve_in(reg, "vm", "kvm", Role::Source, Some("alpha"), None).expect_err("proto");
        assert!(e.contains("qmp, ssh, nbd"), "{e}");
        let got =
            resolve_in(reg, "vm", "kvm", Role::Source, Some("alpha"), Some("nbd")).expect("chosen");
        assert_eq!(name(got), ("alpha", "nbd"));
        let got = resolve_in(reg, "vm", "xen", Role::Source, None, None).expect("only beta");
        assert_eq!(got.0.name(), "beta");
    }
}

//! Where a store, source or destination is: a direct `location` or a named
//! resource, resolved to an integration, a protocol, a location and backend
//! settings (secrets as references, never values).

use super::desired::Endpoint;
use super::load::{Located, RawConfig};
use super::model::ResourceTable;
use super::validate::{Ctx, resolve_path, secret};
use crate::integrations::{self, Role};

#[allow(clippy::too_many_arguments)]
pub(super) fn endpoint<T>(
    cx: &mut Ctx,
    raw: &RawConfig,
    l: &Located<T>,
    object: &str,
    role: Role,
    resource: Option<&str>,
    location: Option<&str>,
    integration: Option<&str>,
    protocol: Option<&str>,
) -> Option<Endpoint> {
    match (resource, location) {
        (Some(_), Some(_)) => {
            cx.err(l, object, "give either `resource` or `location`, not both");
            None
        }
        (None, None) => {
            cx.err(l, object, "`resource` or `location` is required");
            None
        }
        (None, Some(loc)) => {
            let (class, subclass, location) = if loc.starts_with("s3://") {
                (
                    "object-storage",
                    "s3",
                    loc.trim_end_matches('/').to_string(),
                )
            } else if let Some((scheme, _)) = loc.split_once("://").filter(|(s, _)| *s != "fs") {
                cx.err(l, object, format!("location {loc:?}: unknown scheme {scheme:?} (use a path, fs://path or s3://bucket/prefix)"));
                return None;
            } else {
                match resolve_path(&l.file, loc.strip_prefix("fs://").unwrap_or(loc)) {
                    Ok(p) => ("filesystem", "local", p.display().to_string()),
                    Err(e) => {
                        cx.err(l, object, e);
                        return None;
                    }
                }
            };
            match integrations::resolve(class, subclass, role, integration, protocol) {
                Ok((i, p)) => Some(Endpoint {
                    integration: i.name,
                    protocol: p,
                    location,
                    resource: None,
                    options: Vec::new(),
                    credentials: Vec::new(),
                }),
                Err(e) => {
                    cx.err(l, object, format!("location {loc:?}: {e}"));
                    None
                }
            }
        }
        (Some(name), None) => {
            let Some(r) = raw.resources.get(name) else {
                let known: Vec<&String> = raw.resources.keys().collect();
                cx.err(
                    l,
                    object,
                    format!("unknown resource {name:?} (declared: {known:?})"),
                );
                return None;
            };
            let res = &r.value;
            let (i, p) =
                match integrations::resolve(&res.class, &res.subclass, role, integration, protocol)
                {
                    Ok(x) => x,
                    Err(e) => {
                        cx.err(l, object, format!("resource {name:?}: {e}"));
                        return None;
                    }
                };
            resource_endpoint(cx, r, &format!("resource.{name}"), i.name, p).map(|mut e| {
                e.resource = Some(name.to_string());
                e
            })
        }
    }
}

fn resource_endpoint(
    cx: &mut Ctx,
    r: &Located<ResourceTable>,
    object: &str,
    integration: &'static str,
    protocol: &'static str,
) -> Option<Endpoint> {
    let res = &r.value;
    match integration {
        "fs" => {
            let Some(path) = &res.path else {
                cx.err(r, object, "a filesystem resource needs `path`");
                return None;
            };
            let p = resolve_path(&r.file, path)
                .map_err(|e| cx.err(r, object, e))
                .ok()?;
            Some(Endpoint {
                integration,
                protocol,
                location: p.display().to_string(),
                resource: None,
                options: Vec::new(),
                credentials: Vec::new(),
            })
        }
        _ => {
            let Some(bucket) = &res.bucket else {
                cx.err(r, object, "an S3 resource needs `bucket`");
                return None;
            };
            let prefix = res.prefix.as_deref().unwrap_or("").trim_matches('/');
            let location = if prefix.is_empty() {
                format!("s3://{bucket}")
            } else {
                format!("s3://{bucket}/{prefix}")
            };
            let mut options = Vec::new();
            if let Some(e) = &res.endpoint {
                options.push(("aws_endpoint".to_string(), e.clone()));
            }
            if let Some(region) = &res.region {
                options.push(("aws_region".to_string(), region.clone()));
            }
            if let Some(h) = res.allow_http {
                options.push(("aws_allow_http".to_string(), h.to_string()));
            }
            let mut credentials = Vec::new();
            if let Some(s) = secret(
                cx,
                r,
                object,
                "access_key_id",
                res.access_key_id_file.as_deref(),
                res.access_key_id_env.as_deref(),
                false,
            ) {
                credentials.push(("aws_access_key_id".to_string(), s));
            }
            if let Some(s) = secret(
                cx,
                r,
                object,
                "secret_access_key",
                res.secret_access_key_file.as_deref(),
                res.secret_access_key_env.as_deref(),
                false,
            ) {
                credentials.push(("aws_secret_access_key".to_string(), s));
            }
            Some(Endpoint {
                integration,
                protocol,
                location,
                resource: None,
                options,
                credentials,
            })
        }
    }
}

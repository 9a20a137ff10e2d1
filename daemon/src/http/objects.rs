//! `/api/v1/{resources,stores,sources,destinations}` and `/{name}`: the
//! applied objects with their integration, location, condition, and for
//! stores the storage type, snapshot count, sizes and last check result.
//! Credentials show only where they are read from (a file path, lossy for
//! bytes that are not UTF-8, or an environment variable name), never a value.

use std::borrow::Cow;
use std::collections::BTreeMap;

use hyper::StatusCode;
use serde::Serialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use super::Ctx;
use super::api::{condition, task_view};
use super::response::{Reply, error, json};
use super::schema::{Condition, Task};
use super::stores::OpenError;
use crate::config::desired::{DesiredState, Endpoint, SecretRef};
use crate::config::model::{InitPolicy, StorageType};
use crate::state::{ObjectKind, TaskFilter, TaskKind};

/// Which object list.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// `[resource.*]`
    Resources,
    /// `[store.*]`
    Stores,
    /// `[source.*]`
    Sources,
    /// `[destination.*]`
    Destinations,
}

impl Kind {
    fn plural(self) -> &'static str {
        match self {
            Kind::Resources => "resources",
            Kind::Stores => "stores",
            Kind::Sources => "sources",
            Kind::Destinations => "destinations",
        }
    }

    fn singular(self) -> &'static str {
        self.plural().trim_end_matches('s')
    }
}

/// The values `T` serializes to, as a string enum schema.
fn serialized_enum<T: Serialize>(all: &[T]) -> RefOr<Schema> {
    let values: Vec<String> = all
        .iter()
        .filter_map(|v| serde_json::to_value(v).ok())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .into()
}

impl PartialSchema for StorageType {
    fn schema() -> RefOr<Schema> {
        serialized_enum(&[StorageType::Standard, StorageType::Cold])
    }
}

impl ToSchema for StorageType {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("StorageType")
    }
}

impl PartialSchema for InitPolicy {
    fn schema() -> RefOr<Schema> {
        serialized_enum(&[InitPolicy::Auto, InitPolicy::Never])
    }
}

impl ToSchema for InitPolicy {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("InitPolicy")
    }
}

/// Where an object's data is: its integration, protocol and location.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    /// The integration serving it.
    pub integration: &'static str,
    /// Its protocol.
    pub protocol: &'static str,
    /// The location (a path or URL; never contains credentials).
    pub location: String,
    /// The resource it came from, if any.
    #[schema(required = true)]
    pub resource: Option<String>,
}

impl From<&Endpoint> for EndpointView {
    fn from(e: &Endpoint) -> EndpointView {
        EndpointView {
            integration: e.integration,
            protocol: e.protocol,
            location: e.location.clone(),
            resource: e.resource.clone(),
        }
    }
}

/// Where a secret is read from, never its value: `{"file": PATH}` (lossy
/// for bytes that are not UTF-8, so the answer is always valid JSON) or
/// `{"env": NAME}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SecretRef)]
#[serde(rename_all = "lowercase")]
pub enum SecretSource {
    /// Read from this file.
    File(String),
    /// Read from this environment variable.
    Env(String),
}

impl From<&SecretRef> for SecretSource {
    fn from(s: &SecretRef) -> SecretSource {
        match s {
            SecretRef::File(p) => SecretSource::File(p.to_string_lossy().into_owned()),
            SecretRef::Env(name) => SecretSource::Env(name.clone()),
        }
    }
}

/// A `[resource.NAME]`: connection settings shared by objects.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// Its name.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    /// Its class (e.g. `s3`).
    pub class: String,
    /// Its subclass.
    pub subclass: String,
    /// Connection fields that were set (path, bucket, endpoint, …).
    pub fields: BTreeMap<String, String>,
    /// Where each credential is read from.
    pub credentials: BTreeMap<String, SecretSource>,
    /// FILE:LINE of the declaration.
    #[schema(pattern = ":[0-9]+$")]
    pub declared_at: String,
}

/// A `[source.NAME]`: what is backed up.
#[derive(Debug, Serialize, ToSchema)]
pub struct Source {
    /// Its name.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    /// Where it is.
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// Exclusion patterns.
    pub excludes: Vec<String>,
    /// Its condition.
    #[schema(required = true)]
    pub condition: Option<Condition>,
    /// FILE:LINE of the declaration.
    #[schema(pattern = ":[0-9]+$")]
    pub declared_at: String,
}

/// A `[destination.NAME]`: where restores go.
#[derive(Debug, Serialize, ToSchema)]
pub struct Destination {
    /// Its name.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    /// Where it is.
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// Its condition.
    #[schema(required = true)]
    pub condition: Option<Condition>,
    /// FILE:LINE of the declaration.
    #[schema(pattern = ":[0-9]+$")]
    pub declared_at: String,
}

/// A `[store.NAME]`: where backups are kept.
#[derive(Debug, Serialize, ToSchema)]
pub struct Store {
    /// Its name.
    #[schema(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub name: String,
    /// Where it is.
    #[serde(flatten)]
    pub endpoint: EndpointView,
    /// `standard` or `cold` (policy only).
    pub storage_type: StorageType,
    /// Whether an empty location is initialised.
    pub init: InitPolicy,
    /// Its condition.
    #[schema(required = true)]
    pub condition: Option<Condition>,
    /// The latest check task on this store.
    #[schema(required = true)]
    pub last_check: Option<Task>,
    /// Its snapshot count and sizes, or why it cannot be read.
    #[schema(required = true)]
    pub contents: Option<StoreContents>,
    /// FILE:LINE of the declaration.
    #[schema(pattern = ":[0-9]+$")]
    pub declared_at: String,
}

/// A store's contents, or why it cannot be read.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum StoreContents {
    /// Its snapshot count and sizes.
    Counts(StoreCounts),
    /// It cannot be read.
    Unreadable {
        /// Why the store cannot be read.
        error: String,
    },
}

/// A store's snapshot count and sizes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreCounts {
    /// Snapshots.
    pub snapshots: u64,
    /// Bytes of the backed-up files.
    pub logical_bytes: u64,
    /// Bytes of the distinct chunks, uncompressed.
    pub raw_bytes: u64,
    /// Bytes stored.
    pub stored_bytes: u64,
    /// Pack files.
    pub packs: u64,
}

/// `GET /api/v1/resources`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceList {
    /// Every applied resource, by name.
    pub resources: Vec<Resource>,
}

/// `GET /api/v1/sources`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceList {
    /// Every applied source, by name.
    pub sources: Vec<Source>,
}

/// `GET /api/v1/destinations`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationList {
    /// Every applied destination, by name.
    pub destinations: Vec<Destination>,
}

/// `GET /api/v1/stores`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoreList {
    /// Every applied store, by name.
    pub stores: Vec<Store>,
}

/// One object of any kind, as sent.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ObjectView {
    Resource(Resource),
    Source(Source),
    Destination(Destination),
    Store(Box<Store>),
}

fn names(applied: &DesiredState, kind: Kind) -> Vec<String> {
    match kind {
        Kind::Resources => applied.resources.keys().cloned().collect(),
        Kind::Stores => applied.stores.keys().cloned().collect(),
        Kind::Sources => applied.sources.keys().cloned().collect(),
        Kind::Destinations => applied.destinations.keys().cloned().collect(),
    }
}

async fn one(
    ctx: &Ctx,
    applied: &DesiredState,
    kind: Kind,
    name: &str,
    detail: bool,
) -> Option<ObjectView> {
    let conditions = ctx.live.conditions();
    let cond = |k: ObjectKind| condition(conditions.get(&(k, name.to_string())));
    let declared =
        |o: &crate::config::desired::Declaration| format!("{}:{}", o.file.display(), o.line);
    Some(match kind {
        Kind::Resources => {
            let r = applied.resources.get(name)?;
            ObjectView::Resource(Resource {
                name: r.name.clone(),
                class: r.class.clone(),
                subclass: r.subclass.clone(),
                fields: r.fields.clone(),
                credentials: r
                    .credentials
                    .iter()
                    .map(|(k, v)| (k.clone(), SecretSource::from(v)))
                    .collect(),
                declared_at: declared(&r.origin),
            })
        }
        Kind::Sources => {
            let s = applied.sources.get(name)?;
            ObjectView::Source(Source {
                name: s.name.clone(),
                endpoint: EndpointView::from(&s.endpoint),
                excludes: s.excludes.clone(),
                condition: cond(ObjectKind::Source),
                declared_at: declared(&s.origin),
            })
        }
        Kind::Destinations => {
            let d = applied.destinations.get(name)?;
            ObjectView::Destination(Destination {
                name: d.name.clone(),
                endpoint: EndpointView::from(&d.endpoint),
                condition: cond(ObjectKind::Destination),
                declared_at: declared(&d.origin),
            })
        }
        Kind::Stores => {
            let s = applied.stores.get(name)?;
            let filter = TaskFilter {
                kind: Some(TaskKind::Check),
                store: Some(name.to_string()),
                limit: Some(1),
                ..Default::default()
            };
            let last_check = ctx
                .db
                .call(move |db| db.list_tasks(&filter))
                .await
                .ok()
                .and_then(|l| l.into_iter().next())
                .map(|t| task_view(&t, None));
            // A store that is not ready is not opened again for its
            // contents: on a silent backend that would hold this request
            // for the backend's minutes of retries.
            let contents = match conditions.get(&(ObjectKind::Store, name.to_string())) {
                _ if !detail => None,
                Some(c) if c.ready => Some(contents(ctx, s).await),
                Some(c) => Some(StoreContents::Unreadable {
                    error: format!("the store is not ready ({}): {}", c.reason, c.message),
                }),
                None => Some(StoreContents::Unreadable {
                    error: "the store has not been tested yet".into(),
                }),
            };
            ObjectView::Store(Box::new(Store {
                name: s.name.clone(),
                endpoint: EndpointView::from(&s.endpoint),
                storage_type: s.storage_type,
                init: s.init,
                condition: cond(ObjectKind::Store),
                last_check,
                contents,
                declared_at: declared(&s.origin),
            }))
        }
    })
}

/// Snapshot count and sizes of a store (opens it; an `error` when it
/// cannot be read).
async fn contents(ctx: &Ctx, def: &crate::config::desired::StoreDef) -> StoreContents {
    let unreadable = |error: String| StoreContents::Unreadable { error };
    let repo = match ctx.stores.get(def, false).await {
        Ok(r) => r,
        Err(OpenError::Problem(p)) => return unreadable(p.to_string()),
        Err(OpenError::Internal(e)) => return unreadable(e),
    };
    match tokio::task::spawn_blocking(move || kloset::ops::browse::info(&repo)).await {
        Ok(Ok(info)) => StoreContents::Counts(StoreCounts {
            snapshots: info.snapshots as u64,
            logical_bytes: info.logical_bytes,
            raw_bytes: info.raw_bytes,
            stored_bytes: info.stored_bytes,
            packs: info.packs as u64,
        }),
        Ok(Err(e)) => unreadable(e.to_string()),
        Err(e) => unreadable(e.to_string()),
    }
}

/// `GET /api/v1/{kind}` (`detail`: also open stores for their contents).
pub async fn list(ctx: &Ctx, kind: Kind, detail: bool) -> Reply {
    let mut items = Vec::new();
    if let Some(applied) = ctx.live.applied() {
        for name in names(&applied, kind) {
            if let Some(v) = one(ctx, &applied, kind, &name, detail).await {
                items.push(v);
            }
        }
    }
    macro_rules! only {
        ($variant:ident) => {
            items
                .into_iter()
                .filter_map(|v| match v {
                    ObjectView::$variant(o) => Some(o),
                    _ => None,
                })
                .collect()
        };
    }
    match kind {
        Kind::Resources => json(
            StatusCode::OK,
            &ResourceList {
                resources: only!(Resource),
            },
        ),
        Kind::Sources => json(
            StatusCode::OK,
            &SourceList {
                sources: only!(Source),
            },
        ),
        Kind::Destinations => json(
            StatusCode::OK,
            &DestinationList {
                destinations: only!(Destination),
            },
        ),
        Kind::Stores => {
            let stores: Vec<Box<Store>> = only!(Store);
            json(
                StatusCode::OK,
                &StoreList {
                    stores: stores.into_iter().map(|s| *s).collect(),
                },
            )
        }
    }
}

/// `GET /api/v1/{kind}/{name}`.
pub async fn get(ctx: &Ctx, kind: Kind, name: &str) -> Reply {
    let found = match ctx.live.applied() {
        Some(applied) => one(ctx, &applied, kind, name, true).await,
        None => None,
    };
    match found {
        Some(v) => json(StatusCode::OK, &v),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no {} named {name:?}", kind.singular()),
        ),
    }
}

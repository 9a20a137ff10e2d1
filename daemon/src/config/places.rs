//! Apps that share a place: two stores in one place (or one inside the
//! other) would mix their data, and so would a store and a destination; both
//! are errors naming both declarations. A source that overlaps a store
//! backs the store up into itself: a warning.

use std::collections::BTreeMap;

use super::desired::{Declaration, DestinationDef, Endpoint, SourceDef, StoreDef};
use super::error::ConfigError;
use crate::integrations::Place;

/// One app with a place.
struct App<'a> {
    object: String,
    endpoint: &'a Endpoint,
    origin: &'a Declaration,
}

fn apps<'a, T>(
    table: &str,
    defs: &'a BTreeMap<String, T>,
    parts: impl Fn(&'a T) -> (&'a Endpoint, &'a Declaration),
) -> Vec<App<'a>> {
    defs.iter()
        .map(|(name, def)| {
            let (endpoint, origin) = parts(def);
            App {
                object: format!("{table}.{name}"),
                endpoint,
                origin,
            }
        })
        .collect()
}

fn at(origin: &Declaration) -> String {
    format!("{}:{}", origin.file.display(), origin.line)
}

/// Whether the source at `source` leaves out the store at `store` (inside
/// it) with one of its `excludes`, matched as a backup matches them: on the
/// path inside the source and on the name of each directory on the way.
fn excluded(source: &Place, store: &Place, excludes: &[String]) -> bool {
    if !source.contains(store) {
        return false;
    }
    let inside = &store.path[source.path.len()..];
    let matchers: Vec<globset::GlobMatcher> = excludes
        .iter()
        .filter_map(|p| globset::Glob::new(p).ok())
        .map(|g| g.compile_matcher())
        .collect();
    (1..=inside.len()).any(|n| {
        let path = inside[..n].join("/");
        matchers
            .iter()
            .any(|m| m.is_match(&path) || m.is_match(&inside[n - 1]))
    })
}

/// Errors and warnings for apps that share a place.
pub(super) fn check(
    stores: &BTreeMap<String, StoreDef>,
    sources: &BTreeMap<String, SourceDef>,
    destinations: &BTreeMap<String, DestinationDef>,
) -> (Vec<ConfigError>, Vec<ConfigError>) {
    let stores = apps("store", stores, |d| (&d.endpoint, &d.origin));
    let source_defs = sources;
    let sources = apps("source", sources, |d| (&d.endpoint, &d.origin));
    let destinations = apps("destination", destinations, |d| (&d.endpoint, &d.origin));
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let clash = |a: &App<'_>, b: &App<'_>, what: &str| {
        ConfigError::at(
            &b.origin.file,
            b.origin.line,
            Some(b.object.clone()),
            format!(
                "{} ({}) and {} ({}) {what}: {} and {}",
                b.object,
                at(b.origin),
                a.object,
                at(a.origin),
                b.endpoint.location,
                a.endpoint.location,
            ),
        )
    };
    for (i, a) in stores.iter().enumerate() {
        let Some(pa) = a.endpoint.place() else {
            continue;
        };
        for b in &stores[i + 1..] {
            if b.endpoint.place().is_some_and(|pb| pa.overlaps(&pb)) {
                errors.push(clash(
                    a,
                    b,
                    "are in the same place, or one inside the other; two stores never share a place",
                ));
            }
        }
        for d in &destinations {
            if d.endpoint.place().is_some_and(|pd| pa.overlaps(&pd)) {
                errors.push(clash(
                    a,
                    d,
                    "overlap; a restore into the destination would write into the store",
                ));
            }
        }
        for (s, def) in sources.iter().zip(source_defs.values()) {
            if s.endpoint
                .place()
                .is_some_and(|ps| ps.overlaps(&pa) && !excluded(&ps, &pa, &def.excludes))
            {
                warnings.push(clash(
                    a,
                    s,
                    "overlap, so a backup of the source reads the store's own data \
                     (exclude the store, or move it)",
                ));
            }
        }
    }
    (errors, warnings)
}

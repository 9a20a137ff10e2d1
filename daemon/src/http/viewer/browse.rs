//! Browsing restore points: `/ui/stores/NAME` (the store and its
//! snapshots, newest first), `/ui/stores/NAME/snapshots/ID[/tree/PATH]`
//! (a directory listing with type, size, mode and time, breadcrumbs; or a
//! file's details). Both lists come a page at a time (`?limit=&cursor=`,
//! like the API, with a "next page" link), their rows streamed. Files link to the JSON API's download
//! `/api/v1/stores/NAME/snapshots/ID/files/PATH` (full snapshot id, so a
//! listing and its downloads always agree). Paths are raw bytes
//! ([`SnapPath`]): links percent-encode every name byte, so names that are
//! not UTF-8 are followed and downloaded exactly; no `..`, NUL or empty
//! part leaves the snapshot. Cold stores list their
//! snapshots but refuse to be read, like the API. The caller has checked
//! the bearer token.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::Arc;

use hyper::StatusCode;
use kloset::ops::browse::{DirPage, Entry, list_page};
use kloset::tree::NodeKind;
use kloset::tree_walk::Listed;
use kloset::{Repository, Snapshot};

use super::html::{self, Crumb, badge, dash, esc, href, link, name};
use super::overview::condition;
use super::{Ctx, Failure, Page, Rest, blocking, open, store_def};
use crate::config::model::StorageType;
use crate::http::browse::snapshot_page;
use crate::http::listing::{Paging, SnapshotCursor};
use crate::http::paths::{self, SnapPath};
use crate::state::ObjectKind;

/// Routes the segments after `/ui/stores/`.
pub async fn route(ctx: &Ctx, rest: &[&str], query: &str) -> Result<Page, Failure> {
    match rest {
        [store] | [store, "snapshots"] => store_page(ctx, store, query).await,
        [store, "snapshots", id] => tree(ctx, store, id, &SnapPath::default(), query).await,
        _ => Err(Failure::not_found(format!(
            "there is no page at /ui/stores/{}",
            rest.join("/")
        ))),
    }
}

fn kind_label(k: NodeKind) -> &'static str {
    match k {
        NodeKind::File => "file",
        NodeKind::Dir => "dir",
        NodeKind::Symlink => "symlink",
        NodeKind::Fifo => "fifo",
        NodeKind::CharDevice => "char dev",
        NodeKind::BlockDevice => "block dev",
        NodeKind::Socket => "socket",
    }
}

fn cold_note() -> String {
    "<div class=\"problems\">This store is cold (<code>storage_type = \"cold\"</code>): its \
     snapshots are listed, but reading their data is refused here. Restore with a task that \
     sets <code>allow_cold_read = true</code>.</div>\n"
        .into()
}

/// The paging parameters of a page, or a 400.
fn paging(query: &str) -> Result<Paging, Failure> {
    Paging::parse(query).map_err(|m| Failure::new(StatusCode::BAD_REQUEST, m))
}

/// The "next page" (and "first page") links under a listing.
fn pager(first: &str, paging: &Paging, next_cursor: Option<&str>) -> String {
    let mut out = String::from("<p class=\"pager\">");
    if paging.cursor.is_some() {
        let _ = write!(out, "{} ", link(first, "« First page"));
    }
    match next_cursor {
        Some(c) => out.push_str(&link(
            &format!("{first}{}", paging.next_query(c)),
            &format!("Next page ({} per page) »", paging.limit),
        )),
        None if paging.cursor.is_some() => {
            out.push_str("<span class=\"muted\">Last page.</span>");
        }
        None => {}
    }
    out.push_str("</p>\n");
    out
}

/// `/ui/stores/NAME`: the store and a page of its snapshots, newest first.
async fn store_page(ctx: &Ctx, store: &str, query: &str) -> Result<Page, Failure> {
    let paging = paging(query)?;
    let after = match paging.cursor.as_deref().map(SnapshotCursor::decode) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(m)) => return Err(Failure::new(StatusCode::BAD_REQUEST, m)),
    };
    let def = store_def(ctx, store)?;
    let repo = open(ctx, &def, false).await?;
    let limit = paging.limit;
    let found = blocking(move || snapshot_page(&repo, after, limit)).await?;
    let (snaps, more, total, problems) = (found.page, found.more, found.total, found.problems);
    let cold = def.storage_type == StorageType::Cold;
    let conditions = ctx.live.conditions();
    let mut body = format!(
        "<h1>Store <span class=\"mono\">{}</span></h1>\n<div class=\"card\"><dl class=\"kv\">\
         <dt>Condition</dt><dd>{}</dd><dt>Storage type</dt><dd>{}</dd>\
         <dt>Location</dt><dd class=\"mono\">{}</dd><dt>Integration</dt><dd>{} / {}</dd>\
         <dt>Snapshots</dt><dd>{}</dd></dl></div>\n",
        name(store),
        condition(conditions.get(&(ObjectKind::Store, store.to_string()))),
        def.storage_type.as_str(),
        esc(&def.endpoint.location),
        esc(def.endpoint.integration),
        esc(def.endpoint.protocol),
        total,
    );
    if cold {
        body.push_str(&cold_note());
    }
    if !problems.is_empty() {
        body.push_str("<div class=\"problems\"><h2>Unreadable snapshots</h2><ul>");
        for (key, e) in &problems {
            let _ = write!(
                body,
                "<li><span class=\"mono\">{}</span>: {}</li>",
                esc(key),
                esc(&e.to_string())
            );
        }
        body.push_str("</ul></div>\n");
    }
    body.push_str("<h2>Snapshots</h2>\n");
    let mut rest = None;
    if total == 0 {
        body.push_str("<p class=\"muted\">This store has no snapshot yet.</p>\n");
    } else {
        let store = store.to_string();
        let next = more
            .then(|| snaps.last().map(|s| SnapshotCursor::from(s).encode()))
            .flatten();
        let first = href(&["ui", "stores", &store]);
        let pager = pager(&first, &paging, next.as_deref());
        rest = Some(Rest(Box::new(move |w| {
            snapshot_rows(w, &store, cold, &snaps)?;
            w.write_all(pager.as_bytes())
        })));
    }
    Ok(Page {
        title: format!("Store {store}"),
        crumbs: vec![
            Crumb::link("/".into(), "Overview".into()),
            Crumb::here(format!("store <span class=\"mono\">{}</span>", name(store))),
        ],
        body,
        rest,
    })
}

/// The table of a page of snapshots, written row by row.
fn snapshot_rows(w: &mut dyn Write, store: &str, cold: bool, snaps: &[Snapshot]) -> io::Result<()> {
    w.write_all(
        b"<table class=\"snapshots\">\n<thead><tr><th>ID</th><th>Time (UTC)</th><th>Host</th>\
          <th>Source</th><th>Tags</th><th class=\"num\">Files</th><th class=\"num\">Size</th>\
          <th class=\"num\">Added</th><th class=\"num\">Unreadable</th></tr></thead>\n<tbody>\n",
    )?;
    for s in snaps {
        let id = s.id.to_string();
        let short = format!("<span class=\"mono\">{}</span>", esc(&s.id.short()));
        let id_cell = if cold {
            short
        } else {
            link(
                &format!(
                    "{}/",
                    href(&["ui", "stores", store, "snapshots", &id, "tree"])
                ),
                &short,
            )
        };
        let tags: Vec<String> = s.tags.iter().map(|t| badge("idle", t)).collect();
        let errors = if s.errors.is_empty() {
            "0".to_string()
        } else {
            badge("warn", &s.errors.len().to_string())
        };
        writeln!(
            w,
            "<tr><td title=\"{}\">{id_cell}</td><td class=\"nowrap\">{}</td><td>{}</td>\
             <td class=\"mono\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{errors}</td></tr>",
            esc(&id),
            html::time_ns(s.time_ns),
            name(&s.host),
            name(&s.source),
            if tags.is_empty() {
                dash()
            } else {
                tags.join(" ")
            },
            s.stats.files,
            html::bytes(s.stats.bytes),
            html::bytes(s.stats.bytes_added),
        )?;
    }
    w.write_all(b"</tbody>\n</table>\n")
}

/// Resolves `spec`; reopens with a fresh index when the snapshot is newer
/// than the cached handle.
async fn snapshot(
    ctx: &Ctx,
    store: &str,
    spec: &str,
) -> Result<(Arc<Repository>, Snapshot, bool), Failure> {
    let def = store_def(ctx, store)?;
    let cold = def.storage_type == StorageType::Cold;
    let repo = open(ctx, &def, false).await?;
    let (r, s) = (repo.clone(), spec.to_string());
    let snap = blocking(move || r.resolve_snapshot(&s)).await?;
    if !matches!(repo.index().get(&snap.tree), Ok(Some(_))) {
        return Ok((open(ctx, &def, true).await?, snap, cold));
    }
    Ok((repo, snap, cold))
}

/// `/ui/stores/NAME/snapshots/ID/tree/PATH` (the path as raw bytes).
pub async fn tree(
    ctx: &Ctx,
    store: &str,
    spec: &str,
    path: &SnapPath,
    query: &str,
) -> Result<Page, Failure> {
    let paging = paging(query)?;
    let (repo, snap, cold) = snapshot(ctx, store, spec).await?;
    if cold {
        return Err(Failure::new(
            StatusCode::CONFLICT,
            "this store is cold (storage_type = \"cold\"): reading its data is refused here; \
             restore with a task that sets allow_cold_read = true",
        ));
    }
    let (r, s, p) = (repo.clone(), snap.clone(), path.clone());
    let (after, limit) = (paging.cursor.clone(), paging.limit);
    let (node, page) = blocking(move || {
        let node = paths::find_node(&r, &s, &p)?;
        let page = match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(tree)) => list_page(&r, &tree, after.as_deref(), limit)?,
            _ => DirPage {
                entries: Vec::new(),
                more: false,
            },
        };
        Ok((node, page))
    })
    .await?;
    let id = snap.id.to_string();
    let base = href(&["ui", "stores", store, "snapshots", id.as_str()]);
    let tree_href = move |upto: &SnapPath| match upto.encoded() {
        e if e.is_empty() => format!("{base}/tree/"),
        e => format!("{base}/tree/{e}/"),
    };
    let files = href(&[
        "api",
        "v1",
        "stores",
        store,
        "snapshots",
        id.as_str(),
        "files",
    ]);
    let download = move |p: &SnapPath| format!("{files}/{}", p.encoded());
    let mut crumbs = vec![
        Crumb::link("/".into(), "Overview".into()),
        Crumb::link(
            href(&["ui", "stores", store]),
            format!("store <span class=\"mono\">{}</span>", name(store)),
        ),
        Crumb::link(
            tree_href(&SnapPath::default()),
            format!(
                "snapshot <span class=\"mono\">{}</span>",
                esc(&snap.id.short())
            ),
        ),
    ];
    let depth = path.parts().len();
    for (i, p) in path.parts().iter().enumerate() {
        let label = format!(
            "<span class=\"mono\">{}</span>",
            name(&String::from_utf8_lossy(p))
        );
        crumbs.push(if i + 1 == depth {
            Crumb::here(label)
        } else {
            Crumb::link(tree_href(&path.prefix(i + 1)), label)
        });
    }
    let shown = path.display();
    let mut body = format!(
        "<h1>{} <span class=\"mono\">{}</span></h1>\n<div class=\"card\"><dl class=\"kv\">\
         <dt>Snapshot</dt><dd class=\"mono\">{}</dd><dt>Taken</dt><dd>{} UTC</dd>\
         <dt>Host / source</dt><dd>{} / <span class=\"mono\">{}</span></dd></dl></div>\n",
        match node.kind {
            NodeKind::Dir => "Directory",
            NodeKind::File => "File",
            NodeKind::Symlink => "Symlink",
            _ => "Special file",
        },
        name(&shown),
        esc(&id),
        html::time_ns(snap.time_ns),
        name(&snap.host),
        name(&snap.source),
    );
    let rest = if node.kind != NodeKind::Dir {
        let e = Entry::from(&node);
        let _ = writeln!(
            body,
            "<div class=\"card\"><dl class=\"kv\"><dt>Type</dt><dd>{}</dd><dt>Size</dt><dd>{} \
             <span class=\"muted\">({} bytes)</span></dd><dt>Mode</dt><dd>{}</dd>\
             <dt>Modified</dt><dd>{} UTC</dd></dl></div>",
            kind_label(e.kind),
            html::bytes(e.size),
            e.size,
            html::mode(e.mode),
            html::time_ns(e.mtime_ns),
        );
        if e.kind == NodeKind::File {
            let _ = writeln!(
                body,
                "<p><a class=\"badge run\" download href=\"{}\">Download</a></p>",
                esc(&download(path))
            );
        }
        None
    } else {
        let next = page
            .more
            .then(|| page.entries.last().map(|e| paths::encode(&e.name)))
            .flatten();
        let pager = pager(&tree_href(path), &paging, next.as_deref());
        let path = path.clone();
        Some(Rest(Box::new(move |w| {
            // Directories first within the page (the whole directory when
            // it fits one); pages follow each other in name order.
            let mut entries = page.entries;
            entries.sort_by(|a, b| {
                (a.kind != NodeKind::Dir, &a.name).cmp(&(b.kind != NodeKind::Dir, &b.name))
            });
            listing(w, &entries, &path, tree_href, download)?;
            w.write_all(pager.as_bytes())
        })))
    };
    Ok(Page {
        title: format!("{shown} · {store}"),
        crumbs,
        body,
        rest,
    })
}

/// The table of a page of entries, written row by row.
fn listing(
    w: &mut dyn Write,
    entries: &[Listed],
    path: &SnapPath,
    tree_href: impl Fn(&SnapPath) -> String,
    download: impl Fn(&SnapPath) -> String,
) -> io::Result<()> {
    w.write_all(
        b"<table class=\"listing\">\n<thead><tr><th>Type</th><th>Name</th><th class=\"num\">Size</th>\
          <th>Mode</th><th>Modified (UTC)</th></tr></thead>\n<tbody>\n",
    )?;
    let depth = path.parts().len();
    if depth > 0 {
        writeln!(
            w,
            "<tr><td class=\"kind\">dir</td><td class=\"mono\">{}</td><td></td><td></td><td></td></tr>",
            link(&tree_href(&path.prefix(depth - 1)), "..")
        )?;
    }
    if entries.is_empty() {
        w.write_all(b"<tr><td colspan=\"5\" class=\"muted\">This directory is empty.</td></tr>\n")?;
    }
    for n in entries {
        let e = Entry::from(n);
        let child = path.join(&n.name);
        let shown = name(&e.name);
        let cell = match e.kind {
            NodeKind::Dir => link(&tree_href(&child), &format!("{shown}/")),
            NodeKind::File => format!(
                "<a download href=\"{}\">{shown}</a>",
                esc(&download(&child))
            ),
            NodeKind::Symlink => format!(
                "{shown} <span class=\"muted\">→ {}</span>",
                e.target.as_deref().map_or_else(String::new, name)
            ),
            _ => shown,
        };
        let size = if e.kind == NodeKind::Dir {
            dash()
        } else {
            format!(
                "<span title=\"{} bytes\">{}</span>",
                e.size,
                html::bytes(e.size)
            )
        };
        writeln!(
            w,
            "<tr><td class=\"kind\">{}</td><td class=\"mono\">{cell}</td><td class=\"num\">{size}</td>\
             <td>{}</td><td class=\"nowrap\">{}</td></tr>",
            kind_label(e.kind),
            html::mode(e.mode),
            html::time_ns(e.mtime_ns),
        )?;
    }
    w.write_all(b"</tbody>\n</table>\n")
}

//! HTML building blocks of the viewer: escaping (every dynamic string goes
//! through [`esc`] or [`name`]), percent-encoded link segments, value
//! formatting (times, durations, sizes, statuses) and the page layout with
//! its inline style sheet. Nothing here loads an external asset or needs
//! JavaScript.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::state::TaskStatus;

/// Everything but the URL-unreserved characters is encoded in a segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Escapes text for an HTML element or a quoted attribute value.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a name (file, store, …) and shows control characters as
/// highlighted escapes (a newline becomes `\n`), so every name stays on one
/// line and two names that differ only there look different.
pub fn name(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut plain = String::new();
    for c in s.chars() {
        let escaped = match c {
            '\n' => "\\n".to_string(),
            '\t' => "\\t".to_string(),
            '\r' => "\\r".to_string(),
            c if c.is_control() => format!("\\x{{{:02x}}}", c as u32),
            c => {
                plain.push(c);
                continue;
            }
        };
        out.push_str(&esc(&plain));
        plain.clear();
        let _ = write!(out, "<span class=\"ctl\">{escaped}</span>");
    }
    out.push_str(&esc(&plain));
    out
}

/// Percent-encodes one path segment of a link.
pub fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// `/a/b/c` from segments, each percent-encoded.
pub fn href(parts: &[&str]) -> String {
    let mut out = String::new();
    for p in parts {
        out.push('/');
        out.push_str(&seg(p));
    }
    out
}

/// A link: `href` must already be encoded; `label` is raw HTML.
pub fn link(href: &str, label: &str) -> String {
    format!("<a href=\"{}\">{label}</a>", esc(href))
}

/// A time in UTC with its age: `2025-01-31 02:00:00 (5 min ago)`.
pub fn time(t: &DateTime<Utc>) -> String {
    format!(
        "<time datetime=\"{}\">{}</time> <span class=\"muted\">{}</span>",
        super::super::api::time(t),
        t.format("%Y-%m-%d %H:%M:%S"),
        esc(&ago(t))
    )
}

/// A time, or a dash.
pub fn opt_time(t: Option<&DateTime<Utc>>) -> String {
    t.map_or_else(dash, time)
}

/// A time from Unix nanoseconds (snapshot and file times), UTC.
pub fn time_ns(ns: i64) -> String {
    match DateTime::from_timestamp(ns.div_euclid(1_000_000_000), 0) {
        Some(t) => format!(
            "<time datetime=\"{}\">{}</time>",
            super::super::api::time(&t),
            t.format("%Y-%m-%d %H:%M:%S")
        ),
        None => dash(),
    }
}

/// `(in 5 s)`, `(3 min ago)`.
pub fn ago(t: &DateTime<Utc>) -> String {
    let ms = (Utc::now() - *t).num_milliseconds();
    let span = short_span((ms.unsigned_abs() + 500) / 1000);
    if ms < 0 {
        format!("(in {span})")
    } else {
        format!("({span} ago)")
    }
}

fn short_span(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min", secs / 60),
        3600..86_400 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86_400, secs % 86_400 / 3600),
    }
}

/// A duration: `850 ms`, `4.2 s`, `3 min 5 s`, `2 h 4 min`.
pub fn duration_ms(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

/// A size in IEC units (`1.5 KiB`).
pub fn bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

/// An em dash for a missing value.
pub fn dash() -> String {
    "<span class=\"muted\">—</span>".to_string()
}

/// A colored label; `class` is one of `ok`, `bad`, `warn`, `run`, `idle`.
pub fn badge(class: &str, text: &str) -> String {
    format!("<span class=\"badge {class}\">{}</span>", esc(text))
}

/// The badge of a task status.
pub fn status(s: TaskStatus) -> String {
    let class = match s {
        TaskStatus::Succeeded => "ok",
        TaskStatus::Failed => "bad",
        TaskStatus::Running => "run",
        TaskStatus::Partial | TaskStatus::Skipped | TaskStatus::Cancelled => "warn",
    };
    badge(class, s.as_str())
}

/// Permission bits as `rwxr-xr-x`, with the octal value as a tooltip.
pub fn mode(mode: u32) -> String {
    let bits = mode & 0o777;
    let mut s = String::with_capacity(9);
    for shift in [6, 3, 0] {
        let b = bits >> shift;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        s.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    format!(
        "<span class=\"mono\" title=\"{:04o}\">{s}</span>",
        mode & 0o7777
    )
}

/// One step of the breadcrumb trail: an encoded link and a raw-HTML label.
#[derive(Debug, Clone)]
pub struct Crumb {
    /// Encoded URL (`None`: the current page).
    pub href: Option<String>,
    /// Label, already escaped.
    pub label: String,
}

impl Crumb {
    /// A step with a link.
    pub fn link(href: String, label: String) -> Crumb {
        Crumb {
            href: Some(href),
            label,
        }
    }

    /// The current page.
    pub fn here(label: String) -> Crumb {
        Crumb { href: None, label }
    }
}

/// A whole document: header, breadcrumbs, `body` (raw HTML) and footer.
pub fn layout(title: &str, crumbs: &[Crumb], body: &str) -> String {
    let mut out = layout_head(title, crumbs);
    out.push_str(body);
    out.push_str(&layout_tail());
    out
}

/// A page up to its `<main>` content (see [`layout`]).
pub fn layout_head(title: &str, crumbs: &[Crumb]) -> String {
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light\">\n<link rel=\"icon\" href=\"data:,\">\n\
         <title>{} · klosetd</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header><a class=\"brand\" href=\"/\">klosetd</a>\
         <nav><a href=\"/\">Overview</a><a href=\"/status\">/status</a>\
         <a href=\"/metrics\">/metrics</a><a href=\"/api/v1/status\">JSON API</a></nav></header>\n<main>\n",
        esc(title)
    );
    if !crumbs.is_empty() {
        out.push_str("<nav class=\"crumbs\" aria-label=\"breadcrumbs\">");
        for (i, c) in crumbs.iter().enumerate() {
            if i > 0 {
                out.push_str("<span class=\"sep\">›</span>");
            }
            match &c.href {
                Some(h) => out.push_str(&link(h, &c.label)),
                None => {
                    let _ = write!(out, "<span aria-current=\"page\">{}</span>", c.label);
                }
            }
        }
        out.push_str("</nav>\n");
    }
    out
}

/// A page after its `<main>` content (see [`layout`]).
pub fn layout_tail() -> String {
    format!(
        "\n</main>\n<footer>klosetd {} · read-only viewer: no JavaScript, no cookies, no external \
         assets. When <code>[daemon] token_file</code> is set, pages that read backed-up data \
         (snapshots, directories, downloads) answer 401 to a plain browser: reach them through a \
         reverse proxy that adds <code>Authorization: Bearer &lt;token&gt;</code>.</footer>\n\
         </body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    )
}

const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d2330;background:#f4f6f9}
a{color:#1f5fbf;text-decoration:none}a:hover{text-decoration:underline}
header{display:flex;align-items:center;gap:24px;padding:10px 24px;background:#1d2a3f;color:#fff}
header a{color:#d7e3f7}.brand{font-weight:700;font-size:17px;color:#fff}
header nav{display:flex;gap:16px}
main{max-width:1240px;margin:0 auto;padding:16px 24px 32px}
h1{font-size:22px;margin:8px 0 12px}h2{font-size:17px;margin:26px 0 8px}
.crumbs{margin:4px 0 8px;color:#586174}.crumbs .sep{margin:0 7px;color:#9aa3b2}
.card{background:#fff;border:1px solid #dde2ea;border-radius:8px;padding:12px 16px;margin:0 0 12px}
.problems{background:#fff4f2;border:1px solid #f0b8ae;border-radius:8px;padding:10px 16px;margin:0 0 12px}
.problems h2{margin:0 0 6px;color:#a32012}.problems ul{margin:0;padding-left:20px}
.problems li{white-space:pre-wrap;word-break:break-word}.problems p{margin:4px 0}
.warnings{background:#fffbea;border:1px solid #ecd58a;border-radius:8px;padding:10px 16px;margin:0 0 12px}
.warnings h2{margin:0 0 6px;color:#7a5a00}.warnings ul{margin:0;padding-left:20px}.warnings li{word-break:break-word}
table{width:100%;border-collapse:collapse;background:#fff;border:1px solid #dde2ea;border-radius:8px;overflow:hidden}
th,td{padding:6px 10px;text-align:left;vertical-align:baseline;border-bottom:1px solid #eceff4}
th{background:#eef1f6;font-weight:600;color:#3b4456;white-space:nowrap}
tbody tr:nth-child(even){background:#fafbfd}tbody tr:hover{background:#f0f5ff}
td.num,th.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:4px 18px;margin:0}
dl.kv dt{color:#586174}dl.kv dd{margin:0;word-break:break-word}
.mono,code{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:.92em}
.ctl{background:#fdf0d5;color:#8a5a00;border-radius:3px;padding:0 2px}.muted{color:#7b8496}.nowrap{white-space:nowrap}
.err{color:#a32012;white-space:pre-wrap;word-break:break-word;max-width:46em}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;white-space:nowrap}
.ok{background:#dff3e4;color:#17692f}.bad{background:#fbe1de;color:#a32012}
.warn{background:#fdf0d5;color:#8a5a00}.run{background:#dde9fb;color:#1f4fa0}.idle{background:#eceff4;color:#586174}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:12px}
.plot{background:#fff;border:1px solid #dde2ea;border-radius:8px;padding:8px 10px}
.plot h3{font-size:14px;margin:2px 0 4px}.plot svg{width:100%;height:auto;display:block}
td.kind{color:#586174;width:6em;white-space:nowrap}
figure{margin:0}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:12px;margin:0 0 12px}.cards .card{margin:0}
footer{max-width:1240px;margin:0 auto;padding:12px 24px 28px;color:#7b8496;font-size:12px}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(
            name("a\nb<\t\u{1}"),
            "a<span class=\"ctl\">\\n</span>b&lt;<span class=\"ctl\">\\t</span>\
             <span class=\"ctl\">\\x{01}</span>"
        );
        assert_eq!(esc("x\0y"), "x\u{fffd}y");
    }

    #[test]
    fn segments_and_links() {
        assert_eq!(seg("a b/c?d#e%&'\"<"), "a%20b%2Fc%3Fd%23e%25%26%27%22%3C");
        assert_eq!(seg("ok-._~Z9"), "ok-._~Z9");
        assert_eq!(seg("é"), "%C3%A9");
        assert_eq!(href(&["ui", "stores", "a b"]), "/ui/stores/a%20b");
        assert_eq!(link("/x?a=1&b", "L"), "<a href=\"/x?a=1&amp;b\">L</a>");
    }

    #[test]
    fn formatting() {
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(4_200), "4.2 s");
        assert_eq!(duration_ms(185_000), "3 min 5 s");
        assert_eq!(duration_ms(7_440_000), "2 h 4 min");
        assert!(mode(0o100755).contains(">rwxr-xr-x<"));
        assert!(mode(0o644).contains("title=\"0644\""));
        assert_eq!(short_span(59), "59 s");
        assert_eq!(short_span(3_700), "1 h 1 min");
    }
}

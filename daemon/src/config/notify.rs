//! Validation of `[notify.NAME]` channels and of the `notify = [...]`
//! lists that name them (schedules, tasks, and `[daemon]`'s default).
//!
//! A channel's URL is a secret more often than not (a healthchecks ping
//! URL, an ntfy topic, a webhook with a key in its path), so it can come
//! from `url_file` or `url_env`, is checked here without being shown, and a
//! plain `url` is shown only as its scheme and host.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::desired::{NotifyDef, NotifyKind, NotifyTarget, UrlRef};
use super::load::{Located, RawConfig};
use super::model::NotifyTable;
use super::validate::{Ctx, parse_duration, secret};
use crate::state::NotifyEvent;

/// How long one delivery may take, unless `timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The events a channel gets when it has no `on`.
pub fn default_events(kind: NotifyKind) -> BTreeSet<NotifyEvent> {
    use NotifyEvent::*;
    match kind {
        // healthchecks.io wants every run: start, then success or fail;
        // it notices a missing ping itself.
        NotifyKind::Healthchecks => [Start, Success, Failure, Partial].into(),
        _ => [Failure, Partial, Recovery, Stale].into(),
    }
}

/// Every `[notify.NAME]`, validated.
pub(super) fn channels(cx: &mut Ctx, raw: &RawConfig) -> BTreeMap<String, NotifyDef> {
    let mut out = BTreeMap::new();
    for (name, l) in &raw.notify {
        if let Some(def) = channel(cx, name, l) {
            out.insert(name.clone(), def);
        }
    }
    out
}

fn channel(cx: &mut Ctx, name: &str, l: &Located<NotifyTable>) -> Option<NotifyDef> {
    let object = format!("notify.{name}");
    let t = &l.value;
    let kind = match t.kind.as_str() {
        "webhook" => NotifyKind::Webhook,
        "healthchecks" => NotifyKind::Healthchecks,
        "ntfy" => NotifyKind::Ntfy,
        "exec" => NotifyKind::Exec,
        other => {
            cx.err_at(
                l,
                l.line_of_key("kind"),
                &object,
                format!("unknown kind {other:?} (known: webhook, healthchecks, ntfy, exec)"),
            );
            return None;
        }
    };
    let target = target(cx, l, &object, kind)?;
    let token = match kind {
        NotifyKind::Webhook | NotifyKind::Ntfy => secret(
            cx,
            l,
            &object,
            "token",
            t.token_file.as_deref(),
            t.token_env.as_deref(),
            false,
        ),
        NotifyKind::Healthchecks | NotifyKind::Exec => {
            if t.token_file.is_some() || t.token_env.is_some() {
                cx.err(
                    l,
                    &object,
                    format!("a {} channel takes no token", kind.as_str()),
                );
            }
            None
        }
    };
    let on = match &t.on {
        None => default_events(kind),
        Some(list) => {
            let mut set = BTreeSet::new();
            for text in list {
                match text.parse::<NotifyEvent>() {
                    Ok(e) => {
                        set.insert(e);
                    }
                    Err(e) => cx.err_at(l, l.line_of_key("on"), &object, format!("on: {e}")),
                }
            }
            set
        }
    };
    let timeout = match &t.timeout {
        None => DEFAULT_TIMEOUT,
        Some(text) => match parse_duration(cx, l, &object, "timeout", text) {
            Some(d) if !d.is_zero() => d,
            Some(_) => {
                cx.err(l, &object, "timeout must be more than zero");
                return None;
            }
            None => return None,
        },
    };
    Some(NotifyDef {
        name: name.to_string(),
        kind,
        target,
        token,
        on,
        timeout,
        origin: super::validate::origin(l),
    })
}

fn target(
    cx: &mut Ctx,
    l: &Located<NotifyTable>,
    object: &str,
    kind: NotifyKind,
) -> Option<NotifyTarget> {
    let t = &l.value;
    let urls = [&t.url, &t.url_file, &t.url_env]
        .iter()
        .filter(|u| u.is_some())
        .count();
    if kind == NotifyKind::Exec {
        if urls > 0 {
            cx.err(l, object, "an exec channel runs `command`; it takes no url");
        }
        return match &t.command {
            Some(argv) if !argv.is_empty() && !argv[0].is_empty() => {
                Some(NotifyTarget::Command(argv.clone()))
            }
            _ => {
                cx.err(
                    l,
                    object,
                    "an exec channel needs `command` as argv: [\"program\", \"arg\", …]",
                );
                None
            }
        };
    }
    if t.command.is_some() {
        cx.err(
            l,
            object,
            format!("`command` belongs to exec channels, not {}", kind.as_str()),
        );
    }
    if urls != 1 {
        cx.err(
            l,
            object,
            format!(
                "a {} channel needs exactly one of url, url_file or url_env",
                kind.as_str()
            ),
        );
        return None;
    }
    if let Some(url) = &t.url {
        return match check_url(url) {
            Ok(()) => Some(NotifyTarget::Url(UrlRef::Plain(url.clone()))),
            Err(e) => {
                cx.err_at(l, l.line_of_key("url"), object, format!("url: {e}"));
                None
            }
        };
    }
    let secret = secret(
        cx,
        l,
        object,
        "url",
        t.url_file.as_deref(),
        t.url_env.as_deref(),
        true,
    )?;
    // Read once now so that a bad one fails validation; the error never
    // shows the value.
    match secret.read_text() {
        Ok(text) => {
            if let Err(e) = check_url(text.trim()) {
                cx.err(
                    l,
                    object,
                    format!("the url read from {}: {e}", secret.describe()),
                );
                return None;
            }
        }
        Err(e) => {
            cx.err(l, object, format!("url: {e}"));
            return None;
        }
    }
    Some(NotifyTarget::Url(UrlRef::Secret(secret)))
}

/// An absolute `http` or `https` URL with a host. The error never repeats
/// the URL.
pub fn check_url(text: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "the scheme is {:?}; use http or https",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(())
}

/// The channels of a schedule or task: its own `notify` if written, else
/// `[daemon] notify`; each must be declared.
pub(super) fn references<T>(
    cx: &mut Ctx,
    raw: &RawConfig,
    l: &Located<T>,
    object: &str,
    own: Option<&Vec<String>>,
) -> Vec<String> {
    let (list, line) = match own {
        Some(list) => (list.clone(), l.line_of_key("notify")),
        None => match &raw.daemon {
            // `[daemon] notify` is checked once, where it is declared.
            Some(d) => return d.value.notify.clone().unwrap_or_default(),
            None => return Vec::new(),
        },
    };
    check_names(cx, raw, l, line, object, &list);
    list
}

/// Checks `[daemon] notify`.
pub(super) fn check_default(cx: &mut Ctx, raw: &RawConfig) {
    if let Some(d) = &raw.daemon
        && let Some(list) = &d.value.notify
    {
        let line = d.line_of_key("notify");
        check_names(cx, raw, d, line, "daemon", list);
    }
}

fn check_names<T>(
    cx: &mut Ctx,
    raw: &RawConfig,
    l: &Located<T>,
    line: usize,
    object: &str,
    list: &[String],
) {
    let mut seen = BTreeSet::new();
    for name in list {
        if !raw.notify.contains_key(name) {
            cx.err_at(
                l,
                line,
                object,
                format!("notify: no [notify.{name}] is declared"),
            );
        } else if !seen.insert(name) {
            cx.err_at(l, line, object, format!("notify: {name:?} is listed twice"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn urls_are_http_with_a_host_and_errors_do_not_repeat_them() {
        assert!(check_url("https://hc-ping.com/5f1e").is_ok());
        assert!(check_url("http://127.0.0.1:8080/hook?key=s3cret").is_ok());
        for bad in [
            "ftp://example.com/s3cret",
            "/relative/s3cret",
            "s3cret",
            "file:///s3cret",
        ] {
            let e = check_url(bad).expect_err(bad);
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}

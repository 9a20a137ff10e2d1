//! Conditional requests on downloads (RFC 9110 §13): `If-None-Match` with
//! the weak comparison (`W/"x"` matches `"x"`), lists of entity tags and
//! `*`, over every header line; `If-Range` with the strong comparison only
//! (a weak tag or a date never matches, so the whole file is sent). A
//! malformed header never matches: the full answer is always safe.

use hyper::header::{HeaderMap, IF_NONE_MATCH, IF_RANGE};

/// One entity tag: whether it is weak, and its opaque part with quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tag<'a> {
    weak: bool,
    opaque: &'a str,
}

/// Parses one entity tag at the start of `s`; returns it and the rest.
fn tag(s: &str) -> Option<(Tag<'_>, &str)> {
    let (weak, s) = match s.strip_prefix("W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let body = s.strip_prefix('"')?;
    // etagc = %x21 / %x23-7E / obs-text: anything but `"`, controls, space.
    let end = body.find('"')?;
    if body[..end]
        .bytes()
        .any(|b| b <= b' ' || b == 0x7f || b == b'"')
    {
        return None;
    }
    Some((
        Tag {
            weak,
            opaque: &s[..end + 2],
        },
        &body[end + 1..],
    ))
}

/// `#entity-tag`: a comma-separated list (empty elements allowed, as RFC
/// 9110 §5.6.1 says recipients must accept); `None` if malformed.
fn tag_list(s: &str) -> Option<Vec<Tag<'_>>> {
    let mut out = Vec::new();
    let mut rest = s.trim_start_matches([' ', '\t', ',']);
    while !rest.is_empty() {
        let (t, after) = tag(rest)?;
        out.push(t);
        let after = after.trim_start_matches([' ', '\t']);
        if !after.is_empty() && !after.starts_with(',') {
            return None;
        }
        rest = after.trim_start_matches([' ', '\t', ',']);
    }
    Some(out)
}

/// Whether `If-None-Match` matches the current (strong) tag `etag`, so the
/// answer is `304 Not Modified`.
pub fn none_match(headers: &HeaderMap, etag: &str) -> bool {
    let Some((current, _)) = tag(etag) else {
        return false;
    };
    headers.get_all(IF_NONE_MATCH).iter().any(|value| {
        let Ok(v) = value.to_str() else {
            return false;
        };
        if v.trim() == "*" {
            return true;
        }
        tag_list(v).is_some_and(|tags| tags.iter().any(|t| t.opaque == current.opaque))
    })
}

/// Whether a `Range` may be honoured under `If-Range`: no `If-Range`, or
/// one that is a strong tag equal to `etag`.
pub fn range_allowed(headers: &HeaderMap, etag: &str) -> bool {
    let mut values = headers.get_all(IF_RANGE).iter();
    let Some(first) = values.next() else {
        return true;
    };
    if values.next().is_some() {
        return false;
    }
    let (Ok(v), Some((current, _))) = (first.to_str(), tag(etag)) else {
        return false;
    };
    matches!(tag(v.trim()), Some((t, "")) if !t.weak && !current.weak && t.opaque == current.opaque)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    const ETAG: &str = "\"0123abcd\"";

    fn headers(name: hyper::header::HeaderName, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name.clone(), HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn if_none_match_uses_the_weak_comparison() {
        let m = |values: &[&str]| none_match(&headers(IF_NONE_MATCH, values), ETAG);
        assert!(m(&["\"0123abcd\""]));
        assert!(m(&["W/\"0123abcd\""]));
        assert!(m(&["*"]));
        assert!(m(&[" \"x\", W/\"0123abcd\" "]));
        assert!(m(&["\"a,b\", \"0123abcd\""]), "a comma inside a tag");
        assert!(m(&[",,\"0123abcd\",,"]), "empty list elements");
        assert!(m(&["\"x\"", "\"0123abcd\""]), "several header lines");
        assert!(!m(&[]));
        assert!(!m(&["\"0123abce\""]));
        assert!(!m(&["0123abcd"]), "unquoted");
        assert!(!m(&["w/\"0123abcd\""]), "W is case-sensitive");
        assert!(!m(&["\"0123abcd\" junk"]));
        assert!(!m(&["\"x\", *"]), "* is only valid alone");
        assert!(!m(&["\"0123abcd"]));
    }

    #[test]
    fn if_range_uses_the_strong_comparison() {
        let r = |values: &[&str]| range_allowed(&headers(IF_RANGE, values), ETAG);
        assert!(r(&[]));
        assert!(r(&["\"0123abcd\""]));
        assert!(r(&[" \"0123abcd\" "]));
        assert!(!r(&["W/\"0123abcd\""]));
        assert!(!r(&["\"other\""]));
        assert!(!r(&["\"0123abcd\", \"x\""]));
        assert!(!r(&["Wed, 21 Oct 2015 07:28:00 GMT"]));
        assert!(!r(&["\"0123abcd\"", "\"0123abcd\""]));
    }
}

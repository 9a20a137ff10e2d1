//! The `retention` table of a backup schedule as the engine's forget
//! policy, and the values of a prune task (`max_unused`, `max_repack`).
//! Both are checked at validation and converted again when a task runs,
//! with the same functions, so a valid config never fails here at run time.

use std::time::Duration;

use kloset::ops::forget::RetentionPolicy;

use super::model::{RetentionTable, ShareOrSize};

/// The engine policy for a `retention` table. An empty table (or one whose
/// counts are all zero) is refused: retention never means "forget
/// everything".
pub fn policy(table: &RetentionTable) -> Result<RetentionPolicy, String> {
    let within = match &table.keep_within {
        None => None,
        Some(text) => Some(humantime::parse_duration(text).map_err(|e| {
            format!("retention.keep_within = {text:?}: {e} (write e.g. \"14d\", \"36h\")")
        })?),
    };
    let policy = RetentionPolicy {
        last: table.keep_last,
        hourly: table.keep_hourly,
        daily: table.keep_daily,
        weekly: table.keep_weekly,
        monthly: table.keep_monthly,
        yearly: table.keep_yearly,
        within: within.filter(|d| *d > Duration::ZERO),
        tags: table.keep_tags.clone(),
    };
    if policy.is_empty() {
        return Err(
            "retention keeps nothing: give at least one of keep_last, keep_hourly, \
             keep_daily, keep_weekly, keep_monthly, keep_yearly (above 0), keep_within or \
             keep_tags (an empty retention would forget every snapshot)"
                .into(),
        );
    }
    policy.validate().map_err(|e| format!("retention: {e}"))?;
    Ok(policy)
}

/// `max_unused`: a share in [0, 1], written `0.2` or `"20%"`.
pub fn share(value: &ShareOrSize) -> Result<f64, String> {
    let share = match value {
        ShareOrSize::Number(n) => *n,
        ShareOrSize::Text(t) => {
            let t = t.trim();
            match t.strip_suffix('%') {
                Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
                None => t.parse::<f64>(),
            }
            .map_err(|_| format!("max_unused = {t:?}: write a share such as \"20%\" or 0.2"))?
        }
    };
    if !(0.0..=1.0).contains(&share) || share.is_nan() {
        return Err(format!(
            "max_unused = {share}: a share is between 0 and 1 (0% and 100%)"
        ));
    }
    Ok(share)
}

/// `max_repack`: a size, written `"4GiB"`, `"500MB"` or a number of bytes.
pub fn size(value: &ShareOrSize) -> Result<u64, String> {
    match value {
        ShareOrSize::Number(n) if *n >= 0.0 && n.fract() == 0.0 && *n < 9.0e18 => Ok(*n as u64),
        ShareOrSize::Number(n) => Err(format!(
            "max_repack = {n}: write a whole number of bytes or a size such as \"4GiB\""
        )),
        ShareOrSize::Text(t) => t
            .trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| b.as_u64())
            .map_err(|e| format!("max_repack = {t:?}: {e} (write e.g. \"4GiB\", \"500MB\")")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_retention_is_refused() {
        let e = policy(&RetentionTable::default()).err().unwrap_or_default();
        assert!(e.contains("keeps nothing"), "{e}");
        let zero = RetentionTable {
            keep_last: Some(0),
            ..Default::default()
        };
        assert!(policy(&zero).is_err());
    }

    #[test]
    fn retention_maps_every_key() {
        let t = RetentionTable {
            keep_last: Some(2),
            keep_daily: Some(7),
            keep_within: Some("14d".into()),
            keep_tags: vec!["keep".into()],
            ..Default::default()
        };
        let p = policy(&t).expect("valid");
        assert_eq!(p.last, Some(2));
        assert_eq!(p.daily, Some(7));
        assert_eq!(p.within, Some(Duration::from_secs(14 * 86400)));
        assert_eq!(p.tags, vec!["keep".to_string()]);
        let bad = RetentionTable {
            keep_within: Some("soon".into()),
            ..Default::default()
        };
        assert!(policy(&bad).is_err());
    }

    #[test]
    fn shares_and_sizes() {
        assert_eq!(share(&ShareOrSize::Text("20%".into())), Ok(0.2));
        assert_eq!(share(&ShareOrSize::Number(0.5)), Ok(0.5));
        assert!(share(&ShareOrSize::Text("120%".into())).is_err());
        assert!(share(&ShareOrSize::Text("lots".into())).is_err());
        assert!(share(&ShareOrSize::Number(-0.1)).is_err());
        assert_eq!(size(&ShareOrSize::Text("1KiB".into())), Ok(1024));
        assert_eq!(size(&ShareOrSize::Number(0.0)), Ok(0));
        assert!(size(&ShareOrSize::Number(1.5)).is_err());
        assert!(size(&ShareOrSize::Text("big".into())).is_err());
    }
}

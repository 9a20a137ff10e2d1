//! Crontab field checks and the day-of-week conversion to the `cron` crate's numbering.
//!
//! The `cron` crate parses the fields; this module only does what it does not:
//! clear range messages naming the field, rejecting `L`/`W`/`#` by name, and
//! translating crontab day-of-week numbers (0-7, 0 and 7 = Sunday) to the
//! crate's (1-7, 1 = Sunday). Every message is returned as a plain sentence;
//! [`super::spec`] adds the expression it came from. Macro expansion lives
//! here too.

use std::str::FromStr;

use cron::Schedule;

/// One numeric crontab field: its name in messages and its inclusive bounds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldKind {
    pub(crate) name: &'static str,
    pub(crate) lo: u32,
    pub(crate) hi: u32,
    /// Position in the crate's 6-field expression (seconds first).
    pub(crate) position: usize,
}

pub(crate) const SECOND: FieldKind = FieldKind {
    name: "second",
    lo: 0,
    hi: 59,
    position: 0,
};
pub(crate) const MINUTE: FieldKind = FieldKind {
    name: "minute",
    lo: 0,
    hi: 59,
    position: 1,
};
pub(crate) const HOUR: FieldKind = FieldKind {
    name: "hour",
    lo: 0,
    hi: 23,
    position: 2,
};
pub(crate) const DAY_OF_MONTH: FieldKind = FieldKind {
    name: "day-of-month",
    lo: 1,
    hi: 31,
    position: 3,
};
pub(crate) const MONTH: FieldKind = FieldKind {
    name: "month",
    lo: 1,
    hi: 12,
    position: 4,
};

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const DAY_FULL_NAMES: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

/// True when a day field counts as "restricted" for the Vixie day rule: it
/// does not start with `*` (or the Quartz `?`). As in Vixie cron and cronie,
/// `*/2` counts as unrestricted.
pub(crate) fn is_restricted(field: &str) -> bool {
    !field.starts_with(['*', '?'])
}

/// Checks a numeric field (second, minute, hour, day of month, month) for
/// what the crate would reject with a confusing message, or not reject at all.
pub(crate) fn check_field(kind: FieldKind, field: &str) -> Result<(), String> {
    for item in field.split(',') {
        if item.is_empty() {
            return Err(format!("empty list item in {} field {field:?}", kind.name));
        }
        if kind.position == DAY_OF_MONTH.position {
            check_day_of_month_extensions(item)?;
        }
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step {
            parse_step(kind.name, step, kind.hi)?;
        }
        for part in base.split('-') {
            if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
                match u32::from_str(part) {
                    Ok(v) if (kind.lo..=kind.hi).contains(&v) => {}
                    _ => {
                        return Err(format!(
                            "{} {part} is out of range {}-{}",
                            kind.name, kind.lo, kind.hi
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Rejects the Quartz extensions the crate does not implement, by name.
fn check_day_of_month_extensions(item: &str) -> Result<(), String> {
    let upper = item.to_ascii_uppercase();
    let digits_then = |suffix: char| {
        upper
            .strip_suffix(suffix)
            .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_digit()))
    };
    if upper == "L" || upper == "LW" || digits_then('L') {
        return Err(format!(
            "day-of-month {item:?}: 'L' (last day of the month) is not supported"
        ));
    }
    if digits_then('W') {
        return Err(format!(
            "day-of-month {item:?}: 'W' (nearest weekday) is not supported"
        ));
    }
    if item.contains('#') {
        return Err(format!(
            "day-of-month {item:?}: '#' is not valid in the day-of-month field"
        ));
    }
    Ok(())
}

fn parse_step(field_name: &str, step: &str, hi: u32) -> Result<u32, String> {
    match u32::from_str(step) {
        Ok(0) => Err(format!(
            "{field_name} step must be at least 1, found \"/{step}\""
        )),
        Ok(n) if n <= hi => Ok(n),
        Ok(n) => Err(format!(
            "{field_name} step {n} is larger than the field's range (at most {hi})"
        )),
        Err(_) => Err(format!("{field_name} step {step:?} is not a number")),
    }
}

/// Converts a crontab day-of-week field to the crate's syntax.
///
/// Crontab accepts 0-7 (0 and 7 are Sunday), names (`SUN`..`SAT`, or full
/// names, any case), ranges, lists and steps; `*/2` is Sunday, Tuesday,
/// Thursday, Saturday, as in Vixie cron. A range ending on Sunday may be
/// written `FRI-SUN` or `5-0` (read as `5-7`). The result is `*` when every
/// day is selected, else a list of day names, which means the same in both
/// numberings.
pub(crate) fn convert_day_of_week(field: &str) -> Result<String, String> {
    let mut days = [false; 7];
    for item in field.split(',') {
        if item.is_empty() {
            return Err(format!("empty list item in day-of-week field {field:?}"));
        }
        if item.contains('#') {
            return Err(format!(
                "day-of-week {item:?}: '#' (n-th weekday of the month) is not supported"
            ));
        }
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, parse_step("day-of-week", step, 7)?),
            None => (item, 1),
        };
        let has_step = item.contains('/');
        let (start, end) = if base == "*" || base == "?" {
            (0, 7)
        } else if let Some((a, b)) = base.split_once('-') {
            let (a, b) = (day_value(a)?, day_value(b)?);
            match (a, b) {
                (a, 0) if a > 0 => (a, 7),
                (a, b) if a <= b => (a, b),
                _ => return Err(format!("day-of-week range {base:?} goes backwards")),
            }
        } else if has_step {
            (day_value(base)?, 7)
        } else {
            let v = day_value(base)?;
            (v, v)
        };
        let step = usize::try_from(step).unwrap_or(1);
        for day in (start..=end).step_by(step) {
            if let Some(slot) = days.get_mut(day % 7) {
                *slot = true;
            }
        }
    }
    if days.iter().all(|d| *d) {
        return Ok("*".to_owned());
    }
    let names: Vec<&str> = DAY_NAMES
        .iter()
        .zip(days)
        .filter_map(|(name, on)| on.then_some(*name))
        .collect();
    Ok(names.join(","))
}

/// One day-of-week value: 0-7 or a name. Returns 0-7 (7 stays 7 so that
/// ranges such as `1-7` keep working; it is folded to Sunday afterwards).
fn day_value(text: &str) -> Result<usize, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match usize::from_str(text) {
            Ok(v) if v <= 7 => Ok(v),
            _ => Err(format!(
                "day-of-week {text} is out of range 0-7 (0 and 7 are Sunday)"
            )),
        };
    }
    let lower = text.to_ascii_lowercase();
    if let Some(i) = DAY_NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(&lower))
    {
        return Ok(i);
    }
    if let Some(i) = DAY_FULL_NAMES.iter().position(|n| *n == lower) {
        return Ok(i);
    }
    if lower
        .strip_suffix('l')
        .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "day-of-week {text:?}: 'L' (last weekday of the month) is not supported"
        ));
    }
    Err(format!(
        "day-of-week {text:?} is not a day: use 0-7 (0 and 7 are Sunday) or SUN..SAT"
    ))
}

/// The 5-field expansion of a macro (any case).
pub(crate) fn expand_macro(text: &str) -> Result<&'static str, String> {
    match text.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => Ok("0 0 1 1 *"),
        "@monthly" => Ok("0 0 1 * *"),
        "@weekly" => Ok("0 0 * * 0"),
        "@daily" | "@midnight" => Ok("0 0 * * *"),
        "@hourly" => Ok("0 * * * *"),
        "@reboot" => Err(
            "@reboot is not supported: schedules run at wall-clock times; \
                          declare a [task.NAME] for a one-shot run, or set catch_up = true \
                          to run once after the daemon was down"
                .to_owned(),
        ),
        _ => Err(
            "unknown macro; use @yearly, @annually, @monthly, @weekly, @daily, \
                  @midnight or @hourly"
                .to_owned(),
        ),
    }
}

/// Lets the crate check one field alone, so its message can name the field.
pub(crate) fn probe_field(kind: FieldKind, field: &str) -> Result<(), String> {
    let mut parts = ["*"; 6];
    if let Some(slot) = parts.get_mut(kind.position) {
        *slot = field;
    }
    Schedule::from_str(&parts.join(" "))
        .map(|_| ())
        .map_err(|e| {
            format!(
                "{} field {field:?}: {}",
                kind.name,
                crate_message(&e.to_string())
            )
        })
}

/// The crate's errors echo the expression and a caret line, then the reason
/// (sometimes empty). Keeps the reason.
pub(crate) fn crate_message(error: &str) -> String {
    let reason: Vec<&str> = error
        .lines()
        .skip_while(|l| !l.trim_start().starts_with('^'))
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if reason.is_empty() {
        "expected numbers or names, '*', ranges a-b, lists a,b or steps x/n".to_owned()
    } else {
        reason.join(" ")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn day_of_week_numbers_names_ranges_and_steps() {
        let cases = [
            ("0", "SUN"),
            ("7", "SUN"),
            ("0,7", "SUN"),
            ("sun", "SUN"),
            ("Sunday", "SUN"),
            ("1-5", "MON,TUE,WED,THU,FRI"),
            ("MON-FRI", "MON,TUE,WED,THU,FRI"),
            ("5-7", "SUN,FRI,SAT"),
            ("FRI-SUN", "SUN,FRI,SAT"),
            ("*/2", "SUN,TUE,THU,SAT"),
            ("1-7/2", "SUN,MON,WED,FRI"),
            ("3/2", "SUN,WED,FRI"),
            ("*", "*"),
            ("?", "*"),
            ("0-6", "*"),
            ("1-7", "*"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                convert_day_of_week(input).as_deref(),
                Ok(expected),
                "{input}"
            );
        }
    }

    #[test]
    fn day_of_week_rejects_with_reasons() {
        let cases = [
            ("8", "out of range 0-7"),
            ("5#2", "'#'"),
            ("5L", "'L'"),
            ("FUNDAY", "not a day"),
            ("5-2", "goes backwards"),
            ("*/0", "at least 1"),
            ("1,", "empty list item"),
        ];
        for (input, needle) in cases {
            let err = convert_day_of_week(input).err().unwrap_or_default();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn numeric_fields_name_the_field_and_range() {
        assert_eq!(
            check_field(MINUTE, "61").err().as_deref(),
            Some("minute 61 is out of range 0-59")
        );
        assert!(check_field(HOUR, "1-24").is_err());
        assert!(check_field(DAY_OF_MONTH, "0").is_err());
        assert!(check_field(MONTH, "13").is_err());
        assert!(check_field(DAY_OF_MONTH, "L").is_err_and(|e| e.contains("'L'")));
        assert!(check_field(DAY_OF_MONTH, "15W").is_err_and(|e| e.contains("'W'")));
        assert!(check_field(MINUTE, "*/0").is_err());
        assert!(check_field(MINUTE, "*/61").is_err());
        assert!(check_field(MINUTE, "0-59/5,7").is_ok());
        assert!(check_field(MONTH, "JAN-JUN/2").is_ok());
    }

    #[test]
    fn restricted_follows_vixie() {
        assert!(!is_restricted("*"));
        assert!(!is_restricted("*/2"));
        assert!(!is_restricted("?"));
        assert!(is_restricted("1"));
        assert!(is_restricted("MON"));
    }
}

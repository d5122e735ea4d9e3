//! Payload values checked against the backend's column types before a post
//! is built, so no post is queued that the backend must refuse (an overflow
//! of a `numeric(10,6)` column answers 500 and would only be retried) or
//! silently mangle (a Telegram count beyond a 4-byte integer is not stored).
//! See `docs/delivery.md`.

/// Largest magnitude a `numeric(10,6)` column stores: 4 integer digits, 6 decimals.
pub(crate) const NUMERIC_10_6_MAX: f64 = 9_999.999_999;
/// Largest value of a 4-byte signed integer column.
pub(crate) const INT4_MAX: u64 = i32::MAX as u64;

/// Whether `value` fits `numeric(10,6)` once rounded to 6 decimals.
fn fits_numeric_10_6(value: f64) -> bool {
    value.is_finite() && ((value * 1e6).round() / 1e6).abs() <= NUMERIC_10_6_MAX
}

/// A required `numeric(10,6)` field: kept when it fits, else clamped to the
/// column's limit with its sign (a non-finite value becomes 0), with a warning.
pub(crate) fn clamp_numeric_10_6(field: &str, value: f64, post: &str) -> f64 {
    if fits_numeric_10_6(value) {
        return value;
    }
    let clamped = if value.is_nan() {
        0.0
    } else {
        NUMERIC_10_6_MAX.copysign(value)
    };
    tracing::warn!(
        field,
        value,
        clamped,
        "{post}: {field} does not fit the backend's numeric(10,6) column; clamped"
    );
    clamped
}

/// An optional `numeric(10,6)` field: kept when it fits, else omitted (the
/// backend takes a missing optional field), with a warning.
pub(crate) fn fit_numeric_10_6(field: &str, value: Option<f64>, post: &str) -> Option<f64> {
    let value = value?;
    if fits_numeric_10_6(value) {
        return Some(value);
    }
    tracing::warn!(
        field,
        value,
        "{post}: {field} does not fit the backend's numeric(10,6) column; omitted"
    );
    None
}

/// A count stored in a 4-byte integer column: clamped to its maximum, with a warning.
pub(crate) fn clamp_int4(field: &str, value: Option<u64>, post: &str) -> Option<u64> {
    match value {
        Some(v) if v > INT4_MAX => {
            tracing::warn!(
                field,
                value = v,
                clamped = INT4_MAX,
                "{post}: {field} exceeds the backend's 4-byte integer column; clamped"
            );
            Some(INT4_MAX)
        }
        other => other,
    }
}

/// The `username` of a Telegram channel: the backend needs a non-empty,
/// unique, stable string. A private channel has none, so its numeric id
/// stands in (a real username starts with a letter: the two never collide).
pub(crate) fn channel_username(username: Option<&str>, id: i64) -> String {
    match username.map(str::trim) {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_10_6_keeps_what_fits_and_clamps_or_omits_the_rest() {
        assert_eq!(clamp_numeric_10_6("pctChange", 0.05, "p"), 0.05);
        assert_eq!(clamp_numeric_10_6("pctChange", -9_999.5, "p"), -9_999.5);
        assert_eq!(
            clamp_numeric_10_6("pctChange", 12_345.0, "p"),
            NUMERIC_10_6_MAX
        );
        assert_eq!(
            clamp_numeric_10_6("pctChange", -1e9, "p"),
            -NUMERIC_10_6_MAX
        );
        // Rounds to 10 000.000000 in the column: overflow.
        assert_eq!(
            clamp_numeric_10_6("pctChange", 9_999.999_999_7, "p"),
            NUMERIC_10_6_MAX
        );
        assert_eq!(clamp_numeric_10_6("pctChange", f64::NAN, "p"), 0.0);
        assert_eq!(
            clamp_numeric_10_6("pctChange", f64::INFINITY, "p"),
            NUMERIC_10_6_MAX
        );
        assert_eq!(
            fit_numeric_10_6("fundingRate", Some(0.0001), "p"),
            Some(0.0001)
        );
        assert_eq!(fit_numeric_10_6("priceChange", Some(10_000.0), "p"), None);
        assert_eq!(fit_numeric_10_6("priceChange", Some(f64::NAN), "p"), None);
        assert_eq!(fit_numeric_10_6("priceChange", None, "p"), None);
    }

    #[test]
    fn int4_counts_are_clamped() {
        assert_eq!(clamp_int4("views", Some(5_000), "p"), Some(5_000));
        assert_eq!(clamp_int4("views", Some(INT4_MAX), "p"), Some(INT4_MAX));
        assert_eq!(
            clamp_int4("views", Some(3_000_000_000), "p"),
            Some(INT4_MAX)
        );
        assert_eq!(clamp_int4("views", None, "p"), None);
    }

    #[test]
    fn a_private_channel_gets_its_id_as_username() {
        assert_eq!(channel_username(Some("marketfeed"), -100), "marketfeed");
        assert_eq!(channel_username(None, -1001234567890), "-1001234567890");
        assert_eq!(channel_username(Some("  "), 7), "7");
    }
}

//! Kubernetes quantities (`10Gi`, `500M`, `1.5e3`) accepted and refused exactly as the API server
//! does: a port of the grammar of `resource.ParseQuantity` (k8s.io/apimachinery v0.33) that decides
//! validity and sign without computing the value, so no input can overflow it or make it slow.
//!
//! What the rules need to know of a size is whether Kubernetes accepts it and whether it is above
//! zero; the value itself goes unchanged into the backup's PersistentVolumeClaim.

/// The sign of a valid quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sign {
    /// Below zero.
    Negative,
    /// Zero (`0`, `0Gi`, `-0.0`, also `+` or `Ki` alone, which Kubernetes reads as zero).
    Zero,
    /// Above zero (however small: Kubernetes rounds up to 1n, never down to 0).
    Positive,
}

/// Why Kubernetes refuses a string as a quantity (the three errors of `resource.ParseQuantity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Empty, or characters outside `^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$`.
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Format,
    /// A suffix that is none of `n u m "" k M G T P E`, `Ki Mi Gi Ti Pi Ei`, or `e`/`E` and an int64.
    #[error("unable to parse quantity's suffix")]
    Suffix,
    /// No digit where Kubernetes needs one to compute the value (e.g. `.e-10`, `Ei`).
    #[error("unable to parse numeric part of quantity")]
    Numeric,
}

/// How a suffix scales the number, as apimachinery's suffixer interprets it.
#[derive(Clone, Copy)]
enum Suffix {
    /// Powers of ten, named (`k`, `M`, …, `""`) or as an exponent (`e3`); the exponent is already
    /// truncated to 32 bits as Kubernetes does.
    Decimal(i32),
    /// Powers of two: `Ki` = 10 … `Ei` = 60.
    Binary(i32),
}

/// `resource.ParseQuantity(text)`: whether Kubernetes accepts `text` as a quantity, and its sign.
pub fn parse_quantity(text: &str) -> Result<Sign, QuantityError> {
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err(QuantityError::Format);
    }
    let negative = bytes[0] == b'-';
    let mut pos = usize::from(matches!(bytes[0], b'-' | b'+'));
    let digits_from = |from: usize| bytes[from..].iter().take_while(|b| b.is_ascii_digit()).count();
    // Leading zeros are part of the value's text but not of `num`.
    pos += bytes[pos..].iter().take_while(|&&b| b == b'0').count();
    let zeros_end = pos;
    let num_len = digits_from(pos);
    pos += num_len;
    let mut denom_len = 0;
    if bytes.get(pos) == Some(&b'.') {
        pos += 1;
        denom_len = digits_from(pos);
        pos += denom_len;
    }
    let value = &bytes[..pos];
    let nonzero = bytes[zeros_end..pos].iter().any(|b| (b'1'..=b'9').contains(b));
    let suffix = &bytes[pos..];
    if !suffix_shaped(suffix) {
        return Err(QuantityError::Format);
    }
    let suffix = interpret(suffix).ok_or(QuantityError::Suffix)?;
    // Without a digit after the zeros, apimachinery counts the number as "0" (one digit).
    let num_len = num_len.max(1);
    let len = |n: usize| n as i32;
    let fast = match suffix {
        Suffix::Decimal(exponent) => {
            let precision = 18_i32.wrapping_sub(len(num_len).wrapping_add(len(denom_len)));
            precision >= 0 && exponent.wrapping_sub(len(denom_len)) >= -9
        }
        // precision = 15 - digits - exponent·3/10 - 1 (exponent is at most 60)
        Suffix::Binary(exponent) => denom_len == 0 && 14_i32.wrapping_sub(len(num_len)) - exponent * 3 / 10 >= 0,
    };
    // The int64 fast path always parses (at most 18 digits); the arbitrary-precision path needs a
    // digit in the text before the suffix (its zeros count).
    if !fast && !value.iter().any(u8::is_ascii_digit) {
        return Err(QuantityError::Numeric);
    }
    Ok(match (nonzero, negative) {
        (false, _) => Sign::Zero,
        (true, true) => Sign::Negative,
        (true, false) => Sign::Positive,
    })
}

/// The quantity the API server reads when the operator sends `text` as a JSON string (as it does in
/// the backup's PersistentVolumeClaim): `Quantity.UnmarshalJSON` trims white space around the raw
/// JSON text first, so a space or a no-break space around the number is dropped, but a tab or a
/// newline arrives escaped (`\t`) and is refused.
pub fn parse_json_quantity(text: &str) -> Result<Sign, QuantityError> {
    parse_quantity(text.trim_matches(|c: char| c.is_whitespace() && !json_escapes(c)))
}

/// Characters a JSON encoder writes as an escape sequence inside a string.
fn json_escapes(c: char) -> bool {
    c < ' ' || c == '"' || c == '\\'
}

/// `[eEinumkKMGTP]*[-+]?[0-9]*` and nothing after it.
fn suffix_shaped(suffix: &[u8]) -> bool {
    let letters = suffix.iter().take_while(|b| b"eEinumkKMGTP".contains(b)).count();
    let rest = &suffix[letters..];
    let rest = rest.strip_prefix(b"-").or_else(|| rest.strip_prefix(b"+")).unwrap_or(rest);
    rest.iter().all(u8::is_ascii_digit)
}

fn interpret(suffix: &[u8]) -> Option<Suffix> {
    let named = match suffix {
        b"" => Suffix::Decimal(0),
        b"n" => Suffix::Decimal(-9),
        b"u" => Suffix::Decimal(-6),
        b"m" => Suffix::Decimal(-3),
        b"k" => Suffix::Decimal(3),
        b"M" => Suffix::Decimal(6),
        b"G" => Suffix::Decimal(9),
        b"T" => Suffix::Decimal(12),
        b"P" => Suffix::Decimal(15),
        b"E" => Suffix::Decimal(18),
        b"Ki" => Suffix::Binary(10),
        b"Mi" => Suffix::Binary(20),
        b"Gi" => Suffix::Binary(30),
        b"Ti" => Suffix::Binary(40),
        b"Pi" => Suffix::Binary(50),
        b"Ei" => Suffix::Binary(60),
        [b'e' | b'E', exponent @ ..] if !exponent.is_empty() => {
            // strconv.ParseInt(…, 10, 64), then int32(…): the exponent wraps as in Go.
            let exponent: i64 = std::str::from_utf8(exponent).ok()?.parse().ok()?;
            Suffix::Decimal(exponent as i32)
        }
        _ => return None,
    };
    Some(named)
}

#[cfg(test)]
mod tests {
    use super::*;
    use QuantityError::{Format, Numeric, Suffix as BadSuffix};
    use Sign::{Negative, Positive, Zero};

    #[test]
    fn parses_like_apimachinery() {
        let cases: &[(&str, Result<Sign, QuantityError>)] = &[
            ("10Gi", Ok(Positive)),
            ("1", Ok(Positive)),
            ("0", Ok(Zero)),
            ("-0", Ok(Zero)),
            ("+1.5", Ok(Positive)),
            ("-1Ki", Ok(Negative)),
            ("1500m", Ok(Positive)),
            ("0.5Gi", Ok(Positive)),
            ("1n", Ok(Positive)),
            ("0.0000000001", Ok(Positive)),
            ("1e-20", Ok(Positive)),
            ("1E3", Ok(Positive)),
            ("1E", Ok(Positive)),
            ("1e+3", Ok(Positive)),
            ("1e05", Ok(Positive)),
            ("1.", Ok(Positive)),
            (".5", Ok(Positive)),
            ("00.0", Ok(Zero)),
            ("", Err(Format)),
            ("+", Ok(Zero)),
            ("-", Ok(Zero)),
            (".", Ok(Zero)),
            ("Ki", Ok(Zero)),
            ("Ti", Ok(Zero)),
            ("Pi", Err(Numeric)),
            ("Ei", Err(Numeric)),
            ("e-9", Ok(Zero)),
            ("e-10", Err(Numeric)),
            (".e-10", Err(Numeric)),
            ("0e-10", Ok(Zero)),
            ("1e", Err(BadSuffix)),
            ("1e+", Err(BadSuffix)),
            ("1e+-5", Err(Format)),
            ("1K", Err(BadSuffix)),
            ("1mi", Err(BadSuffix)),
            ("1Gii", Err(BadSuffix)),
            ("1Ki5", Err(BadSuffix)),
            ("1ee5", Err(BadSuffix)),
            ("1e5e", Err(Format)),
            ("1.5.5", Err(Format)),
            ("1 Gi", Err(Format)),
            (" 1Gi", Err(Format)),
            ("1Gi ", Err(Format)),
            ("ten gigs", Err(Format)),
            ("0x10", Err(Format)),
            ("1_000", Err(Format)),
            ("١", Err(Format)),
            ("--1", Err(BadSuffix)),
            ("16Ei", Ok(Positive)),
            ("9223372036854775808", Ok(Positive)),
            ("1e30", Ok(Positive)),
            ("1e9223372036854775807", Ok(Positive)),
            ("1e9223372036854775808", Err(BadSuffix)),
            ("1e-9223372036854775808", Ok(Positive)),
            ("1e-9223372036854775809", Err(BadSuffix)),
            ("0.5Ei", Ok(Positive)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_quantity(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn json_strings_lose_the_spaces_go_trims_but_not_escaped_ones() {
        assert_eq!(parse_json_quantity(" 1Gi "), Ok(Positive));
        assert_eq!(parse_json_quantity("\u{a0}1Gi\u{3000}"), Ok(Positive));
        assert_eq!(parse_json_quantity("\t1Gi"), Err(Format));
        assert_eq!(parse_json_quantity("1Gi\n"), Err(Format));
        assert_eq!(parse_json_quantity("   "), Err(Format));
    }

    #[test]
    fn huge_inputs_are_answered_without_computing_them() {
        let digits = "9".repeat(1_000_000);
        assert_eq!(parse_quantity(&format!("{digits}Ei")), Ok(Positive));
        assert_eq!(parse_quantity(&format!("0.{digits}e-2147483648")), Ok(Positive));
    }
}

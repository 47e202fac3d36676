//! When a certificate stops being valid: its `notAfter`, read from the DER (RFC 5280:
//! `Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
//! signature, issuer, validity SEQUENCE { notBefore, notAfter }, … }, … }`). Only what is needed
//! to find that one field is parsed.

use std::time::SystemTime;

/// Why a certificate's validity could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidityError {
    /// The DER ends early or nests wrongly.
    #[error("the certificate is not well-formed DER")]
    Malformed,
    /// `notAfter` is not a UTCTime or GeneralizedTime this reader knows.
    #[error("the certificate's notAfter is not a time")]
    Time,
}

/// One DER element: its tag and its contents; the rest follows.
fn element(der: &[u8]) -> Result<(u8, &[u8], &[u8]), ValidityError> {
    let (&tag, rest) = der.split_first().ok_or(ValidityError::Malformed)?;
    let (&first, rest) = rest.split_first().ok_or(ValidityError::Malformed)?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err(ValidityError::Malformed);
        }
        let (bytes, rest) = rest.split_at(count);
        (bytes.iter().fold(0usize, |length, byte| (length << 8) | usize::from(*byte)), rest)
    };
    if rest.len() < length {
        return Err(ValidityError::Malformed);
    }
    let (contents, rest) = rest.split_at(length);
    Ok((tag, contents, rest))
}

const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// The `notAfter` of the DER certificate `der`.
pub fn not_after(der: &[u8]) -> Result<SystemTime, ValidityError> {
    let (SEQUENCE, certificate, _) = element(der)? else { return Err(ValidityError::Malformed) };
    let (SEQUENCE, tbs, _) = element(certificate)? else { return Err(ValidityError::Malformed) };
    let (tag, _, mut rest) = element(tbs)?;
    if tag == VERSION {
        rest = element(rest)?.2; // the serial number follows the version
    }
    let rest = element(rest)?.2; // signature algorithm
    let rest = element(rest)?.2; // issuer
    let (SEQUENCE, validity, _) = element(rest)? else { return Err(ValidityError::Malformed) };
    let (_, _, after) = element(validity)?;
    let (tag, time, _) = element(after)?;
    parse_time(tag, time)
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn parse_time(tag: u8, text: &[u8]) -> Result<SystemTime, ValidityError> {
    let text = std::str::from_utf8(text).map_err(|_| ValidityError::Time)?;
    let digits = text.strip_suffix('Z').ok_or(ValidityError::Time)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ValidityError::Time);
    }
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let short: i16 = digits[..2].parse().map_err(|_| ValidityError::Time)?;
            (if short < 50 { 2000 + short } else { 1900 + short }, &digits[2..])
        }
        (GENERALIZED_TIME, 14) => (digits[..4].parse().map_err(|_| ValidityError::Time)?, &digits[4..]),
        _ => return Err(ValidityError::Time),
    };
    let field = |at: usize| rest[at..at + 2].parse::<i8>().map_err(|_| ValidityError::Time);
    let date = jiff::civil::Date::new(year, field(0)?, field(2)?).map_err(|_| ValidityError::Time)?;
    let time = jiff::civil::Time::new(field(4)?, field(6)?, field(8)?, 0).map_err(|_| ValidityError::Time)?;
    let zoned = date.to_datetime(time).to_zoned(jiff::tz::TimeZone::UTC).map_err(|_| ValidityError::Time)?;
    Ok(SystemTime::from(zoned.timestamp()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn certificate(not_after: SystemTime) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["example.org".to_owned()]).expect("params");
        params.not_after = time::OffsetDateTime::from(not_after);
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("certificate").der().to_vec()
    }

    #[test]
    fn reads_the_not_after_of_a_certificate_in_either_time_form() {
        let seconds = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        // 2035-03-04T05:06:07Z is written as UTCTime, 2051-01-01T00:00:00Z as GeneralizedTime.
        for expected in [seconds(2_056_856_767), seconds(2_556_143_999)] {
            assert_eq!(not_after(&certificate(expected)), Ok(expected));
        }
    }

    #[test]
    fn refuses_what_is_not_a_certificate_without_panicking() {
        let der = certificate(SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000));
        for cut in 0..der.len() {
            assert_eq!(not_after(&der[..cut]), Err(ValidityError::Malformed), "cut at {cut}");
        }
        assert_eq!(not_after(b"not DER"), Err(ValidityError::Malformed));
        assert_eq!(parse_time(UTC_TIME, b"3501019999Z"), Err(ValidityError::Time));
    }
}

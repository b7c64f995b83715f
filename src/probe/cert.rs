//! What a TLS probe (and an `http` probe on `https://`) reports about a certificate: its
//! `notAfter` and its subject, read straight from the DER.
//!
//! Only the few fields needed are parsed (X.509 `tbsCertificate` → `validity`, `subject`), so no
//! X.509 crate is pulled in for two values. Every length is checked against what is left:
//! arbitrary bytes give an `Err`, never a panic (property-tested in `tests/it/fuzz.rs`).

/// The parts of a certificate a probe reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// `notAfter` as Unix seconds.
    pub not_after: i64,
    /// The subject as `CN=…, O=…` (the common attributes, in certificate order); empty when the
    /// subject has none of them.
    pub subject: String,
    /// Issuer and subject are the same name: nobody vouches for it but itself.
    pub self_signed: bool,
}

impl CertInfo {
    /// Whole days from `now_ms` until `notAfter` (negative once expired), rounded down.
    pub fn days_left(&self, now_ms: i64) -> i64 {
        (self.not_after * 1000 - now_ms).div_euclid(86_400_000)
    }

    /// "expires in 3 days (2026-12-05 10:00 UTC)" or "expired 2 days ago (…)".
    pub fn expiry_text(&self, now_ms: i64) -> String {
        let days = self.days_left(now_ms);
        let when = crate::format::utc(self.not_after * 1000);
        if self.not_after * 1000 <= now_ms {
            let ago = (now_ms - self.not_after * 1000) / 86_400_000;
            format!("expired {} ago ({when})", plural_days(ago))
        } else {
            format!("expires in {} ({when})", plural_days(days))
        }
    }
}

fn plural_days(n: i64) -> String {
    if n == 1 {
        "1 day".into()
    } else {
        format!("{n} days")
    }
}

/// One DER element: its tag and contents; `rest` is what follows it.
struct Tlv<'a> {
    tag: u8,
    body: &'a [u8],
    rest: &'a [u8],
}

fn tlv(b: &[u8]) -> Result<Tlv<'_>, String> {
    let (&tag, b) = b.split_first().ok_or("truncated certificate")?;
    if tag & 0x1f == 0x1f {
        return Err("multi-byte DER tags are not used in certificates".into());
    }
    let (&first, mut b) = b.split_first().ok_or("truncated certificate")?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || b.len() < n {
            return Err("bad DER length".into());
        }
        let mut len = 0usize;
        for &x in &b[..n] {
            len = (len << 8) | x as usize;
        }
        b = &b[n..];
        len
    };
    if len > b.len() {
        return Err("truncated certificate".into());
    }
    Ok(Tlv {
        tag,
        body: &b[..len],
        rest: &b[len..],
    })
}

fn expect<'a>(b: &'a [u8], tag: u8, what: &str) -> Result<Tlv<'a>, String> {
    let t = tlv(b)?;
    if t.tag != tag {
        return Err(format!("expected {what} in the certificate"));
    }
    Ok(t)
}

/// `notAfter` and subject of a DER certificate.
pub fn parse(der: &[u8]) -> Result<CertInfo, String> {
    const SEQ: u8 = 0x30;
    let cert = expect(der, SEQ, "a certificate")?;
    let tbs = expect(cert.body, SEQ, "tbsCertificate")?;
    let mut b = tbs.body;
    // version [0] EXPLICIT, optional
    let first = tlv(b)?;
    if first.tag == 0xa0 {
        b = first.rest;
    }
    let serial = expect(b, 0x02, "a serial number")?;
    let sig = expect(serial.rest, SEQ, "a signature algorithm")?;
    let issuer = expect(sig.rest, SEQ, "an issuer")?;
    let validity = expect(issuer.rest, SEQ, "a validity")?;
    let subject = expect(validity.rest, SEQ, "a subject")?;
    let not_before = tlv(validity.body)?;
    let not_after = tlv(not_before.rest)?;
    Ok(CertInfo {
        not_after: time(not_after.tag, not_after.body)?,
        subject: name(subject.body)?,
        self_signed: issuer.body == subject.body,
    })
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as Unix seconds.
fn time(tag: u8, b: &[u8]) -> Result<i64, String> {
    let s = std::str::from_utf8(b).map_err(|_| "bad certificate time")?;
    let digits = s
        .strip_suffix('Z')
        .ok_or("certificate time is not in UTC")?;
    if !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err("bad certificate time".into());
    }
    let n = |r: std::ops::Range<usize>| -> Result<i64, String> {
        digits
            .get(r)
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| "bad certificate time".to_string())
    };
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy = n(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (0x18, 14) => (n(0..4)?, 4),
        _ => return Err("bad certificate time".into()),
    };
    let (mo, d, h, mi, se) = (
        n(rest..rest + 2)?,
        n(rest + 2..rest + 4)?,
        n(rest + 4..rest + 6)?,
        n(rest + 6..rest + 8)?,
        n(rest + 8..rest + 10)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return Err("bad certificate time".into());
    }
    Ok(days_from_civil(year, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The common attributes of an X.501 Name, `CN=…, O=…`.
fn name(mut b: &[u8]) -> Result<String, String> {
    const ATTRS: &[(&[u8], &str)] = &[
        (&[0x55, 0x04, 0x03], "CN"),
        (&[0x55, 0x04, 0x0a], "O"),
        (&[0x55, 0x04, 0x0b], "OU"),
        (&[0x55, 0x04, 0x06], "C"),
    ];
    let mut parts = Vec::new();
    while !b.is_empty() {
        let set = expect(b, 0x31, "a name component")?;
        b = set.rest;
        let mut s = set.body;
        while !s.is_empty() {
            let atv = expect(s, 0x30, "a name attribute")?;
            s = atv.rest;
            let oid = expect(atv.body, 0x06, "an attribute type")?;
            let value = tlv(oid.rest)?;
            if let Some((_, label)) = ATTRS.iter().find(|(o, _)| *o == oid.body) {
                parts.push(format!("{label}={}", String::from_utf8_lossy(value.body)));
            }
        }
    }
    Ok(parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(time(0x17, b"491231235959Z").unwrap(), 2_524_607_999);
        assert_eq!(time(0x18, b"20500101000000Z").unwrap(), 2_524_608_000);
        assert!(time(0x17, b"4912312359Z").is_err());
        assert!(time(0x18, b"20501301000000Z").is_err());
    }

    #[test]
    fn days_left_rounds_down_and_goes_negative() {
        let c = CertInfo {
            not_after: 10 * 86_400,
            subject: String::new(),
            self_signed: false,
        };
        assert_eq!(c.days_left(0), 10);
        assert_eq!(c.days_left(1), 9);
        assert_eq!(c.days_left(10 * 86_400_000 + 1), -1);
        assert!(
            c.expiry_text(11 * 86_400_000)
                .starts_with("expired 1 day ago")
        );
        assert!(c.expiry_text(0).starts_with("expires in 10 days"));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse(b"").is_err());
        assert!(parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(parse(&[0x30, 0x03, 0x30, 0x01, 0x00]).is_err());
    }
}

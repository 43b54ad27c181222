//! Writing responses into the connection's write buffer.

use super::{Persistence, ReplyTo};

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// One complete response.
#[derive(Clone, Copy, Debug)]
pub struct Response<'a> {
    pub status: u16,
    /// Extra header lines, written in order. `Content-Length` is the writer's, and
    /// `Connection` is written from `to` (pass one here only with
    /// [`Persistence::KeepAlive`], e.g. `Connection: Upgrade` on a 101). CR, LF and NUL in
    /// values are written as spaces, so a value can never start a header of its own.
    pub headers: &'a [(&'a str, &'a [u8])],
    pub body: &'a [u8],
    pub to: ReplyTo,
}

/// Appends `r` to `out`: status line with the standard reason phrase, the headers,
/// `Content-Length` (not for 1xx, 204 and 304, which have no content), the `Connection`
/// header the persistence needs, and the body (not for HEAD). A cached `Date` (see
/// [`http_date`]) is one of the caller's headers. Only `out`'s capacity may grow.
pub fn write_response(out: &mut Vec<u8>, r: &Response<'_>) {
    debug_assert!((100..=999).contains(&r.status), "status {}", r.status);
    out.extend_from_slice(b"HTTP/1.1 ");
    let status = r.status.clamp(100, 999);
    out.extend_from_slice(&[
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in r.headers {
        debug_assert!(
            !name.eq_ignore_ascii_case("content-length")
                && !name.eq_ignore_ascii_case("transfer-encoding"),
            "{name} is the writer's"
        );
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        let start = out.len();
        out.extend_from_slice(value);
        for b in &mut out[start..] {
            if matches!(*b, b'\r' | b'\n' | 0) {
                *b = b' ';
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    let has_content = !matches!(status, 100..=199 | 204 | 304);
    if has_content {
        let mut digits = [0; 20];
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(decimal(r.body.len() as u64, &mut digits));
        out.extend_from_slice(b"\r\n");
    } else {
        debug_assert!(r.body.is_empty(), "a {status} has no content");
    }
    match r.to.persistence {
        Persistence::KeepAlive => {}
        Persistence::KeepAliveHttp10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
        Persistence::Close => out.extend_from_slice(b"Connection: close\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    if has_content && !r.to.head_only {
        out.extend_from_slice(r.body);
    }
}

/// Appends [`CONTINUE`].
pub fn write_continue(out: &mut Vec<u8>) {
    out.extend_from_slice(CONTINUE);
}

/// The reason phrase RFC 9110 gives `status`; an empty phrase (which the status line
/// allows) for codes it does not name.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// `n` in decimal, written to the end of `buf`.
pub(super) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// The IMF-fixdate of a Unix time (`Sun, 06 Nov 1994 08:49:37 GMT`), for the `Date`
/// header that RFC 9110 §6.6.1 asks of a server with a clock. The driver reads its clock
/// and caches this once a second. Times after 9999 are written as the last second of it.
pub fn http_date(unix_secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let secs = unix_secs.min(253_402_300_799);
    let days = secs / 86_400;
    let in_day = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    two_digits(&mut out[5..7], day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    two_digits(&mut out[12..14], year / 100);
    two_digits(&mut out[14..16], year % 100);
    two_digits(&mut out[17..19], in_day / 3600);
    two_digits(&mut out[20..22], in_day / 60 % 60);
    two_digits(&mut out[23..25], in_day % 60);
    out
}

fn two_digits(out: &mut [u8], n: u64) {
    out[0] = b'0' + (n / 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}

/// Year, month (1–12) and day (1–31) of a day count since 1970-01-01, in the proleptic
/// Gregorian calendar. Counts in 400-year eras starting on 1 March, so that the leap day
/// is the last day of a year and needs no special case.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // 1970-01-01 is day 719_468 after 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

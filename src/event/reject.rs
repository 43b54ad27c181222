//! Why an event was not forwarded, and why a field was dropped from one: stable reason
//! labels (for counters and the `capig transform` output) and messages that tell the
//! sender what to do.
//!
//! Design constraint: a [`Rejection`] is `Copy` and holds only `&'static str` details and
//! numbers, never a value from the event, so it can go to logs, metrics and the live tap
//! without carrying personal data.

/// Why a whole event is not forwarded to Meta.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The element is not a JSON object.
    NotAnObject,
    /// The same key appears twice in one object.
    DuplicateKey,
    /// A field has the wrong JSON type or an impossible value.
    InvalidField,
    /// A required field is missing.
    MissingField,
    /// A string is longer than capig accepts.
    FieldTooLong,
    /// `event_time` is more than 7 days in the past (Meta rejects the whole batch).
    EventTooOld,
    /// `event_time` is more than a minute in the future.
    EventInFuture,
    /// `custom_data` breaks a rule Meta enforces: a `Purchase` without a usable `value`
    /// and `currency` (other unusable properties are dropped, see [`Dropped::CustomData`]).
    InvalidCustomData,
    /// `data_processing_options` and friends break Meta's rules.
    InvalidDataProcessingOptions,
    /// The pixel is not configured on this gateway.
    UnknownPixel,
    /// The pixel is configured but disabled.
    PixelDisabled,
    /// The page's host is not one of the pixel's domains.
    DomainNotAllowed,
    /// The event name is blocked for this pixel.
    EventBlocked,
    /// The browser revoked consent.
    ConsentRevoked,
    /// The same `event_name` + `event_id` was forwarded recently.
    Duplicate,
    /// The event, as a CAPI event, is larger than one spool record or one batch can
    /// hold: no resend can fix it.
    EventTooLarge,
}

impl Reason {
    pub const ALL: [Reason; 16] = [
        Reason::NotAnObject,
        Reason::DuplicateKey,
        Reason::InvalidField,
        Reason::MissingField,
        Reason::FieldTooLong,
        Reason::EventTooOld,
        Reason::EventInFuture,
        Reason::InvalidCustomData,
        Reason::InvalidDataProcessingOptions,
        Reason::UnknownPixel,
        Reason::PixelDisabled,
        Reason::DomainNotAllowed,
        Reason::EventBlocked,
        Reason::ConsentRevoked,
        Reason::Duplicate,
        Reason::EventTooLarge,
    ];

    /// The stable snake_case label (counters, `capig transform` output, metrics).
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::NotAnObject => "not_an_object",
            Reason::DuplicateKey => "duplicate_key",
            Reason::InvalidField => "invalid_field",
            Reason::MissingField => "missing_field",
            Reason::FieldTooLong => "field_too_long",
            Reason::EventTooOld => "event_too_old",
            Reason::EventInFuture => "event_in_future",
            Reason::InvalidCustomData => "invalid_custom_data",
            Reason::InvalidDataProcessingOptions => "invalid_data_processing_options",
            Reason::UnknownPixel => "unknown_pixel",
            Reason::PixelDisabled => "pixel_disabled",
            Reason::DomainNotAllowed => "domain_not_allowed",
            Reason::EventBlocked => "event_blocked",
            Reason::ConsentRevoked => "consent_revoked",
            Reason::Duplicate => "duplicate",
            Reason::EventTooLarge => "event_too_large",
        }
    }

    /// Whether the event was fine but a rule of this gateway's configuration (or a
    /// recent identical event) kept it back, as opposed to the event being malformed.
    pub const fn is_policy(self) -> bool {
        matches!(
            self,
            Reason::UnknownPixel
                | Reason::PixelDisabled
                | Reason::DomainNotAllowed
                | Reason::EventBlocked
                | Reason::ConsentRevoked
                | Reason::Duplicate
        )
    }

    fn index(self) -> usize {
        Reason::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// A rejected event: the reason, the field it is about, and what to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    /// The field concerned (`"event_time"`, `"custom_data.currency"`), or `""`.
    pub field: &'static str,
    /// What is wrong and what to do, without any value from the event. `{n}` in it
    /// stands for `number`.
    pub detail: &'static str,
    /// A number that makes the message precise (an age in seconds, a limit), written
    /// where `detail` says `{n}`.
    pub number: u64,
}

/// Appends the line `capig transform` and `capig send` print for a rejected event:
/// `{"rejected":<event_id or null>,"reason":…,"message":…}` and a newline. Only the
/// client's `event_id` and our own texts: no event content.
pub fn write_rejection_line(out: &mut Vec<u8>, event_id: Option<&str>, r: &Rejection) {
    out.extend_from_slice(b"{\"rejected\":");
    match event_id {
        Some(id) => crate::event::json::write_str(out, id),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"reason\":");
    crate::event::json::write_str(out, r.reason.as_str());
    out.extend_from_slice(b",\"message\":");
    r.write_json(out);
    out.extend_from_slice(b"}\n");
}

impl Rejection {
    pub const fn new(reason: Reason, field: &'static str, detail: &'static str) -> Self {
        Rejection { reason, field, detail, number: 0 }
    }

    pub const fn with_number(mut self, n: u64) -> Self {
        self.number = n;
        self
    }
    /// An event that, as a CAPI event, is larger than `max` bytes: more than one spool
    /// record or one batch holds.
    pub const fn event_too_large(max: u64) -> Self {
        Rejection::new(Reason::EventTooLarge, "", "the event is larger than the {n} bytes capig can store for one event; send less custom data").with_number(max)
    }
}

impl Rejection {
    /// The message in pieces: `field: `, the detail with the number in place of `{n}`.
    /// One walk serves `Display` and [`Rejection::write_json`].
    fn pieces<E>(&self, mut piece: impl FnMut(&str) -> Result<(), E>) -> Result<(), E> {
        if !self.field.is_empty() {
            piece(self.field)?;
            piece(": ")?;
        }
        match self.detail.split_once("{n}") {
            Some((before, after)) => {
                let mut digits = [0u8; 20];
                let n = crate::event::ids::format_u64(self.number, &mut digits);
                piece(before)?;
                piece(std::str::from_utf8(n).expect("digits"))?;
                piece(after)
            }
            None => piece(self.detail),
        }
    }

    /// Appends the message as a JSON string literal, without building it first (the
    /// rejection path allocates nothing per event either).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        let _ = self.pieces(|p| {
            crate::event::json::write_escaped(out, p);
            Ok::<(), ()>(())
        });
        out.push(b'"');
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.pieces(|p| f.write_str(p))
    }
}

/// Why a single field was left out of an otherwise forwarded event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dropped {
    /// A hashed `user_data` field could not be normalized (index into `UserField::ALL`).
    UserField(crate::event::normalize::UserField),
    /// `fbp` is not `fb.{index}.{ms}.{random}`.
    MalformedFbp,
    /// `fbc` is not `fb.{index}.{ms}.{fbclid}`.
    MalformedFbc,
    /// `client_ip_address` is not an IP address.
    InvalidClientIp,
    /// A key capig does not know (in the event or its `user_data`); not forwarded.
    UnknownKey,
    /// A `custom_data` property (or an element or item key of one) whose type could not
    /// be converted to CAPI's; see `event::custom_data`.
    CustomData(crate::event::custom_data::Property),
}

impl Dropped {
    /// Counters before the `custom_data` ones: the user fields and the four others.
    const CUSTOM_DATA_START: usize = crate::event::normalize::UserField::ALL.len() + 4;
    pub const COUNT: usize = Self::CUSTOM_DATA_START + crate::event::custom_data::Property::ALL.len();

    pub fn as_str(self) -> &'static str {
        match self {
            // The same label normalize uses for its own errors (`invalid_<key>`).
            Dropped::UserField(field) => field.invalid_reason(),
            Dropped::MalformedFbp => "malformed_fbp",
            Dropped::MalformedFbc => "malformed_fbc",
            Dropped::InvalidClientIp => "invalid_client_ip",
            Dropped::UnknownKey => "unknown_key",
            Dropped::CustomData(p) => p.drop_label(),
        }
    }

    fn index(self) -> usize {
        use crate::event::normalize::UserField;
        match self {
            Dropped::UserField(f) => UserField::ALL.iter().position(|x| *x == f).unwrap_or(0),
            Dropped::MalformedFbp => 11,
            Dropped::MalformedFbc => 12,
            Dropped::InvalidClientIp => 13,
            Dropped::UnknownKey => 14,
            Dropped::CustomData(p) => Self::CUSTOM_DATA_START + p.index(),
        }
    }

    /// Every kind, in counter order.
    pub fn all() -> impl Iterator<Item = Dropped> {
        use crate::event::normalize::UserField;
        UserField::ALL.into_iter().map(Dropped::UserField).chain([
            Dropped::MalformedFbp,
            Dropped::MalformedFbc,
            Dropped::InvalidClientIp,
            Dropped::UnknownKey,
        ])
        .chain(crate::event::custom_data::Property::ALL.into_iter().map(Dropped::CustomData))
    }
}

/// Counters kept by one transformer (one per core: plain integers, no atomics; the
/// owner publishes them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub accepted: u64,
    pub built_fbc: u64,
    rejected: [u64; Reason::ALL.len()],
    dropped: [u64; Dropped::COUNT],
}

impl Counters {
    pub fn reject(&mut self, reason: Reason) {
        self.rejected[reason.index()] += 1;
    }

    pub fn drop_field(&mut self, what: Dropped) {
        self.dropped[what.index()] += 1;
    }

    pub fn rejected(&self, reason: Reason) -> u64 {
        self.rejected[reason.index()]
    }

    pub fn dropped(&self, what: Dropped) -> u64 {
        self.dropped[what.index()]
    }

    /// All non-zero counters as (label, count), rejections first.
    pub fn nonzero(&self) -> Vec<(&'static str, u64)> {
        let rejected = Reason::ALL.iter().map(|r| (r.as_str(), self.rejected(*r)));
        let dropped = Dropped::all().map(|d| (d.as_str(), self.dropped(d)));
        rejected.chain(dropped).filter(|(_, n)| *n > 0).collect()
    }
}

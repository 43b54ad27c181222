//! Normalization and SHA-256 hashing of `user_data` fields (being written).

/// A `user_data` field that Meta requires (or recommends) to be hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserField {
    Em,
    Ph,
    Fn,
    Ln,
    Db,
    Ge,
    Ct,
    St,
    Zp,
    Country,
    ExternalId,
}

impl UserField {
    /// Every hashed field, in the order capig writes them.
    pub const ALL: [UserField; 11] = [
        UserField::Em,
        UserField::Ph,
        UserField::Fn,
        UserField::Ln,
        UserField::Db,
        UserField::Ge,
        UserField::Ct,
        UserField::St,
        UserField::Zp,
        UserField::Country,
        UserField::ExternalId,
    ];

    /// The key as it appears in `user_data`.
    pub const fn key(self) -> &'static str {
        match self {
            UserField::Em => "em",
            UserField::Ph => "ph",
            UserField::Fn => "fn",
            UserField::Ln => "ln",
            UserField::Db => "db",
            UserField::Ge => "ge",
            UserField::Ct => "ct",
            UserField::St => "st",
            UserField::Zp => "zp",
            UserField::Country => "country",
            UserField::ExternalId => "external_id",
        }
    }

    /// The field for a `user_data` key, if it is one of the hashed ones.
    pub fn from_key(key: &str) -> Option<UserField> {
        UserField::ALL.into_iter().find(|f| f.key() == key)
    }
}

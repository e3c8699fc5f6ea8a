//! Administrative codes that can only exist in a valid form.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

/// The six-digit ISTAT code of a comune (province code + progressive), e.g. `073015` for Massafra.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct IstatCode(String);

impl IstatCode {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.len() == 6 && raw.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!("an ISTAT code has 6 digits, got '{raw}'"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The cadastral (Belfiore) code of a comune: one letter and three digits, e.g. `F027`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CadastralCode(String);

impl CadastralCode {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let bytes = raw.as_bytes();
        if bytes.len() == 4
            && bytes[0].is_ascii_uppercase()
            && bytes[1..].iter().all(u8::is_ascii_digit)
        {
            Ok(Self(raw.to_owned()))
        } else {
            Err(format!(
                "a cadastral code is an upper-case letter and 3 digits, got '{raw}'"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A day of the year without a year, `MM-DD` (29 February is refused: no holiday falls on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct MonthDay {
    pub month: u32,
    pub day: u32,
}

impl MonthDay {
    pub fn parse(raw: &str) -> Result<Self, String> {
        const DAYS: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        let bad = || format!("a day of the year is written MM-DD (e.g. 08-05), got '{raw}'");
        let (month, day) = two_digit_pair(raw, '-').ok_or_else(bad)?;
        if !(1..=12).contains(&month) || day == 0 || day > DAYS[month as usize - 1] {
            return Err(bad());
        }
        Ok(Self { month, day })
    }
}

/// `NN<separator>NN`, each part two digits.
fn two_digit_pair(raw: &str, separator: char) -> Option<(u32, u32)> {
    let (a, b) = raw.split_once(separator)?;
    if a.len() != 2 || b.len() != 2 {
        return None;
    }
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Deserializes from the text `parse` reads, with its message on failure.
macro_rules! deserialized_by_parse {
    ($($type:ty),*) => {$(
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    )*};
}

deserialized_by_parse!(MonthDay, TimeOfDay);

impl fmt::Display for MonthDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}-{:02}", self.month, self.day)
    }
}

/// A time of day, `HH:MM` (24 hours), as the schedules are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay {
    pub hour: u32,
    pub minute: u32,
}

impl TimeOfDay {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let bad = || format!("a time of day is written HH:MM (e.g. 07:30), got '{raw}'");
        let (hour, minute) = two_digit_pair(raw, ':').ok_or_else(bad)?;
        if hour > 23 || minute > 59 {
            return Err(bad());
        }
        Ok(Self { hour, minute })
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

macro_rules! parsed_string {
    ($type:ty) => {
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $type {
            type Err = String;
            fn from_str(raw: &str) -> Result<Self, String> {
                Self::parse(raw)
            }
        }
    };
}

parsed_string!(IstatCode);
parsed_string!(CadastralCode);

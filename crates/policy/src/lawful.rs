//! Lawful bases for a flow: the UK GDPR articles, the DPA 2018 Schedule 1 and Schedule 8 conditions, and
//! their plain-English wording for decisions and the rendered agreement.
//!
//! This module knows which combinations the law requires (DOMAIN.md §2); it is not legal advice and does not
//! judge whether a basis fits a purpose: signatories do.

use std::fmt;

use serde::Serialize;

/// The data-protection regime a flow is processed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    /// UK GDPR, with DPA 2018 Part 2.
    UkGdpr,
    /// DPA 2018 Part 3: processing by a competent authority for law-enforcement purposes.
    Dpa2018Part3,
}

/// UK GDPR Art. 6(1) bases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Article6 {
    A,
    B,
    C,
    D,
    E,
    F,
}

impl Article6 {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "a" => Self::A,
            "b" => Self::B,
            "c" => Self::C,
            "d" => Self::D,
            "e" => Self::E,
            "f" => Self::F,
            _ => return None,
        })
    }

    /// The basis in words: `Art. 6(1)(e) public task`.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::A => "Art. 6(1)(a) consent",
            Self::B => "Art. 6(1)(b) contract",
            Self::C => "Art. 6(1)(c) legal obligation",
            Self::D => "Art. 6(1)(d) vital interests",
            Self::E => "Art. 6(1)(e) public task",
            Self::F => "Art. 6(1)(f) legitimate interests",
        }
    }
}

/// UK GDPR Art. 9(2) conditions for special category data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Article9 {
    A,
    B,
    C,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
}

impl Article9 {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "a" => Self::A,
            "b" => Self::B,
            "c" => Self::C,
            "d" => Self::D,
            "e" => Self::E,
            "f" => Self::F,
            "g" => Self::G,
            "h" => Self::H,
            "i" => Self::I,
            "j" => Self::J,
            _ => return None,
        })
    }

    /// The letter, for messages.
    pub const fn letter(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::B => "b",
            Self::C => "c",
            Self::D => "d",
            Self::E => "e",
            Self::F => "f",
            Self::G => "g",
            Self::H => "h",
            Self::I => "i",
            Self::J => "j",
        }
    }

    /// The condition in words.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::A => "Art. 9(2)(a) explicit consent",
            Self::B => "Art. 9(2)(b) employment, social security and social protection",
            Self::C => "Art. 9(2)(c) vital interests where the person cannot consent",
            Self::D => "Art. 9(2)(d) not-for-profit body",
            Self::E => "Art. 9(2)(e) made public by the person",
            Self::F => "Art. 9(2)(f) legal claims and courts",
            Self::G => "Art. 9(2)(g) substantial public interest",
            Self::H => "Art. 9(2)(h) health or social care",
            Self::I => "Art. 9(2)(i) public health",
            Self::J => "Art. 9(2)(j) archiving, research and statistics",
        }
    }

    /// Which Schedule 1 conditions this condition needs: `None` when it needs none.
    pub(crate) fn schedule1_needed(self) -> Option<&'static [Schedule1]> {
        use Schedule1::*;
        match self {
            Self::B => Some(&[Part1Para1]),
            Self::G => Some(&[Part2Para6, Part2Para10, Part2Para16, Part2Para17, Part2Para18]),
            Self::H => Some(&[Part1Para2]),
            Self::I => Some(&[Part1Para3]),
            Self::J => Some(&[Part1Para4]),
            _ => None,
        }
    }
}

/// DPA 2018 Schedule 1 conditions (those a crisis-care flow can plausibly rest on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[allow(missing_docs)]
pub enum Schedule1 {
    #[serde(rename = "part1_para1")]
    Part1Para1,
    #[serde(rename = "part1_para2")]
    Part1Para2,
    #[serde(rename = "part1_para3")]
    Part1Para3,
    #[serde(rename = "part1_para4")]
    Part1Para4,
    #[serde(rename = "part2_para6")]
    Part2Para6,
    #[serde(rename = "part2_para10")]
    Part2Para10,
    #[serde(rename = "part2_para16")]
    Part2Para16,
    #[serde(rename = "part2_para17")]
    Part2Para17,
    #[serde(rename = "part2_para18")]
    Part2Para18,
}

impl Schedule1 {
    /// Every condition, with its name in the policy file.
    pub const ALL: &'static [(Schedule1, &'static str)] = &[
        (Self::Part1Para1, "part1_para1"),
        (Self::Part1Para2, "part1_para2"),
        (Self::Part1Para3, "part1_para3"),
        (Self::Part1Para4, "part1_para4"),
        (Self::Part2Para6, "part2_para6"),
        (Self::Part2Para10, "part2_para10"),
        (Self::Part2Para16, "part2_para16"),
        (Self::Part2Para17, "part2_para17"),
        (Self::Part2Para18, "part2_para18"),
    ];

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, name)| *name == text).map(|(condition, _)| *condition)
    }

    /// The name used in the policy file.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(condition, _)| *condition == self).map_or("", |(_, name)| name)
    }

    /// The condition in words.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::Part1Para1 => "DPA 2018 Sch. 1 Pt. 1 para. 1 employment, social security and social protection",
            Self::Part1Para2 => "DPA 2018 Sch. 1 Pt. 1 para. 2 health or social care purposes",
            Self::Part1Para3 => "DPA 2018 Sch. 1 Pt. 1 para. 3 public health",
            Self::Part1Para4 => "DPA 2018 Sch. 1 Pt. 1 para. 4 research",
            Self::Part2Para6 => "DPA 2018 Sch. 1 Pt. 2 para. 6 statutory and government purposes",
            Self::Part2Para10 => "DPA 2018 Sch. 1 Pt. 2 para. 10 preventing or detecting unlawful acts",
            Self::Part2Para16 => {
                "DPA 2018 Sch. 1 Pt. 2 para. 16 support for individuals with a disability or medical condition"
            }
            Self::Part2Para17 => "DPA 2018 Sch. 1 Pt. 2 para. 17 counselling",
            Self::Part2Para18 => "DPA 2018 Sch. 1 Pt. 2 para. 18 safeguarding of children and individuals at risk",
        }
    }
}

/// DPA 2018 Schedule 8 conditions for sensitive processing under Part 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Schedule8 {
    Para1,
    Para2,
    Para3,
    Para4,
    Para5,
    Para6,
    Para7,
    Para8,
    Para9,
}

impl Schedule8 {
    /// Every condition, with its name in the policy file.
    pub const ALL: &'static [(Schedule8, &'static str)] = &[
        (Self::Para1, "para1"),
        (Self::Para2, "para2"),
        (Self::Para3, "para3"),
        (Self::Para4, "para4"),
        (Self::Para5, "para5"),
        (Self::Para6, "para6"),
        (Self::Para7, "para7"),
        (Self::Para8, "para8"),
        (Self::Para9, "para9"),
    ];

    pub(crate) fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, name)| *name == text).map(|(condition, _)| *condition)
    }

    /// The condition in words.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::Para1 => "DPA 2018 Sch. 8 para. 1 statutory purposes",
            Self::Para2 => "DPA 2018 Sch. 8 para. 2 administration of justice",
            Self::Para3 => "DPA 2018 Sch. 8 para. 3 protecting individuals' vital interests",
            Self::Para4 => "DPA 2018 Sch. 8 para. 4 safeguarding of children and individuals at risk",
            Self::Para5 => "DPA 2018 Sch. 8 para. 5 personal data already in the public domain",
            Self::Para6 => "DPA 2018 Sch. 8 para. 6 legal claims",
            Self::Para7 => "DPA 2018 Sch. 8 para. 7 judicial acts",
            Self::Para8 => "DPA 2018 Sch. 8 para. 8 preventing fraud",
            Self::Para9 => "DPA 2018 Sch. 8 para. 9 archiving",
        }
    }
}

/// The lawful basis of one agreement, checked at load: a UK GDPR flow has an Art. 6 basis, an Art. 9
/// condition and, where Art. 9 needs one, a Schedule 1 condition; a Part 3 flow has a Schedule 8 condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "regime", rename_all = "snake_case")]
pub enum LawfulBasis {
    /// UK GDPR.
    UkGdpr {
        /// Art. 6(1) basis.
        article6: Article6,
        /// Art. 9(2) condition.
        article9: Article9,
        /// Schedule 1 condition, when Art. 9 needs one.
        schedule1: Option<Schedule1>,
        /// Statutes relied on.
        statute: Vec<String>,
    },
    /// DPA 2018 Part 3.
    Dpa2018Part3 {
        /// Schedule 8 condition.
        schedule8: Schedule8,
        /// Statutes relied on.
        statute: Vec<String>,
    },
}

impl LawfulBasis {
    /// The regime.
    pub fn regime(&self) -> Regime {
        match self {
            Self::UkGdpr { .. } => Regime::UkGdpr,
            Self::Dpa2018Part3 { .. } => Regime::Dpa2018Part3,
        }
    }

    /// Each part of the basis in words, one per line of a rendered document.
    pub fn parts(&self) -> Vec<String> {
        let mut parts = Vec::new();
        let statute = match self {
            Self::UkGdpr { article6, article9, schedule1, statute } => {
                parts.push(format!("UK GDPR {}", article6.describe()));
                parts.push(format!("UK GDPR {}", article9.describe()));
                parts.extend(schedule1.map(|condition| condition.describe().to_owned()));
                statute
            }
            Self::Dpa2018Part3 { schedule8, statute } => {
                parts.push("DPA 2018 Part 3 (law enforcement processing)".to_owned());
                parts.push(schedule8.describe().to_owned());
                statute
            }
        };
        parts.extend(statute.iter().cloned());
        parts
    }

    /// True when the basis rests on the person's consent (Art. 6(1)(a) or Art. 9(2)(a)).
    pub fn rests_on_consent(&self) -> bool {
        matches!(self, Self::UkGdpr { article6: Article6::A, .. } | Self::UkGdpr { article9: Article9::A, .. })
    }
}

impl fmt::Display for LawfulBasis {
    /// One readable line: `UK GDPR Art. 6(1)(e) public task; …`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.parts().join("; "))
    }
}

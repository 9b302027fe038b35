//! Newtypes for every id, so a customer id can never be passed where a
//! company id is wanted.
use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(text).map(Self)
            }
        }

        /// Ids are stored as text; a stored one is read back through this.
        impl TryFrom<String> for $name {
            type Error = uuid::Error;

            fn try_from(text: String) -> Result<Self, Self::Error> {
                text.parse()
            }
        }
    };
}

id_type!(
    /// A tenant.
    CompanyId
);
id_type!(
    /// A person who logs in; belongs to exactly one company.
    UserId
);
id_type!(
    /// A customer of a company.
    CustomerId
);
id_type!(
    /// An uploaded image.
    PhotoId
);

/// An aggregate whose streams are named by one kind of id: where a stream is
/// named (a consistency token, a read), the id's type must be the
/// aggregate's, so a photo id cannot name a customer.
pub trait Identified: cqrs_es::Aggregate {
    type Id: fmt::Display + Copy + From<Uuid>;
}

/// The stored type name of aggregate `A`: its events' `aggregate_type`.
pub const fn aggregate_type<A: Identified>() -> &'static str {
    A::TYPE
}

impl Identified for crate::company::Company {
    type Id = CompanyId;
}

impl Identified for crate::user::User {
    type Id = UserId;
}

impl Identified for crate::customer::Customer {
    type Id = CustomerId;
}

impl Identified for crate::photo::Photo {
    type Id = PhotoId;
}

//! Collects field errors while building domain values from a request, so a
//! `422` lists every invalid field at once.
use domain::values::{FieldChange, InvalidValue};

use crate::error::{ApiError, ApiResult, FieldError};

/// The longest search (`?q=`), in characters.
pub const MAX_QUERY_CHARS: usize = 200;

#[derive(Default)]
pub struct Fields {
    errors: Vec<FieldError>,
}

impl Fields {
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// A required value: missing or invalid is recorded.
    pub fn required<T>(
        &mut self,
        field: &str,
        raw: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, InvalidValue>,
    ) -> Option<T> {
        match raw {
            None => {
                self.error(field, "is required");
                None
            }
            Some(raw) => self.parse(field, raw, parse),
        }
    }

    pub fn parse<T>(
        &mut self,
        field: &str,
        raw: &str,
        parse: impl FnOnce(&str) -> Result<T, InvalidValue>,
    ) -> Option<T> {
        match parse(raw) {
            Ok(value) => Some(value),
            Err(InvalidValue(message)) => {
                self.error(field, message);
                None
            }
        }
    }

    /// An optional value: `None` stays `None`; invalid text is recorded.
    pub fn optional<T>(
        &mut self,
        field: &str,
        raw: Option<&str>,
        parse: impl FnOnce(&str) -> Result<T, InvalidValue>,
    ) -> Option<T> {
        raw.and_then(|raw| self.parse(field, raw, parse))
    }

    /// A required field of a PATCH body: absent is no change, `null` is
    /// refused (it cannot be cleared), text is parsed.
    pub fn not_null<T>(
        &mut self,
        field: &str,
        raw: Option<Option<String>>,
        parse: impl FnOnce(&str) -> Result<T, InvalidValue>,
    ) -> Option<T> {
        match raw {
            None => None,
            Some(None) => {
                self.error(field, "must not be null");
                None
            }
            Some(Some(raw)) => self.parse(field, &raw, parse),
        }
    }

    /// An optional field of a PATCH body: absent is no change, `null`
    /// clears it, text is parsed.
    pub fn nullable<T>(
        &mut self,
        field: &str,
        raw: Option<Option<String>>,
        parse: impl FnOnce(&str) -> Result<T, InvalidValue>,
    ) -> Option<FieldChange<T>> {
        match raw {
            None => None,
            Some(None) => Some(FieldChange::Cleared),
            Some(Some(raw)) => self.parse(field, &raw, parse).map(FieldChange::Set),
        }
    }

    pub fn password(&mut self, field: &str, raw: Option<&str>) -> Option<String> {
        use commands::passwords::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};
        let raw = raw.or_else(|| {
            self.error(field, "is required");
            None
        })?;
        let chars = raw.chars().count();
        if chars < MIN_PASSWORD_CHARS {
            self.error(
                field,
                format!("must be at least {MIN_PASSWORD_CHARS} characters"),
            );
            None
        } else if chars > MAX_PASSWORD_CHARS {
            self.error(
                field,
                format!("must be at most {MAX_PASSWORD_CHARS} characters"),
            );
            None
        } else {
            Some(raw.to_owned())
        }
    }

    pub fn finish(self) -> ApiResult<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid(self.errors))
        }
    }

    /// [`Fields::finish`], then the values [`Fields::required`] returned:
    /// each is present once no error was recorded, so the caller need not
    /// check again.
    pub fn finish_with<R: Required>(self, required: R) -> ApiResult<R::Values> {
        self.finish()?;
        required
            .present()
            .ok_or_else(|| ApiError::internal("a required field was neither parsed nor refused"))
    }
}

/// What [`Fields::required`] returned for one or more fields.
pub trait Required {
    type Values;
    fn present(self) -> Option<Self::Values>;
}

impl<A> Required for Option<A> {
    type Values = A;
    fn present(self) -> Option<A> {
        self
    }
}

impl<A, B> Required for (Option<A>, Option<B>) {
    type Values = (A, B);
    fn present(self) -> Option<(A, B)> {
        Some((self.0?, self.1?))
    }
}

impl<A, B, C> Required for (Option<A>, Option<B>, Option<C>) {
    type Values = (A, B, C);
    fn present(self) -> Option<(A, B, C)> {
        Some((self.0?, self.1?, self.2?))
    }
}

impl<A, B, C, D> Required for (Option<A>, Option<B>, Option<C>, Option<D>) {
    type Values = (A, B, C, D);
    fn present(self) -> Option<(A, B, C, D)> {
        Some((self.0?, self.1?, self.2?, self.3?))
    }
}

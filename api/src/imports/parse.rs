//! Reading an import file row by row: CSV with a header row, or one JSON
//! object per line. Blocking reads over a spooled file, so it runs on a
//! blocking thread; memory holds one row (and one batch) at a time.
use commands::imports::RowError;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{BufRead, Read};
use std::rc::Rc;

/// The columns a row may fill, as the create body names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Name,
    Surname,
    Email,
    Phone,
    Notes,
    ExternalId,
}

pub const COLUMN_NAMES: &str = "name, surname, email, phone, notes, external_id";

/// Columns of an export that an import cannot set: read and ignored, so a
/// file exported from a company can be imported as it is.
pub const READ_ONLY: [&str; 10] = [
    "id",
    "company_id",
    "photo",
    "photo_id",
    "created_by",
    "created_at",
    "updated_by",
    "updated_at",
    "deleted_at",
    "version",
];

/// An export guards cells that a spreadsheet would run as a formula with a
/// leading `'`; an import takes the guard off again.
fn unguard(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@']) => rest,
        _ => cell,
    }
}

impl Column {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "name" => Self::Name,
            "surname" => Self::Surname,
            "email" => Self::Email,
            "phone" => Self::Phone,
            "notes" => Self::Notes,
            "external_id" => Self::ExternalId,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Surname => "surname",
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Notes => "notes",
            Self::ExternalId => "external_id",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A row's cells by column: `None` when the row does not give the column,
/// `Some(None)` when it gives it empty (CSV) or `null` (NDJSON).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cells([Option<Option<String>>; 6]);

impl Cells {
    pub fn get(&self, column: Column) -> Option<Option<&str>> {
        self.0[column.index()].as_ref().map(Option::as_deref)
    }

    /// The cell's text, `None` when absent or empty.
    pub fn text(&self, column: Column) -> Option<&str> {
        self.get(column).flatten()
    }

    fn set(&mut self, column: Column, value: Option<String>) {
        self.0[column.index()] = Some(value.filter(|text| !text.is_empty()));
    }
}

/// One row of the file: its cells, or why it cannot be read.
#[derive(Debug)]
pub struct Row {
    /// The 1-based line it starts on (a CSV header is line 1).
    pub line: i64,
    pub cells: Result<Cells, Vec<RowError>>,
}

impl Row {
    /// The row's cells, unless reading them found errors.
    fn checked(line: i64, cells: Cells, errors: Vec<RowError>) -> Self {
        let cells = if errors.is_empty() {
            Ok(cells)
        } else {
            Err(errors)
        };
        Self { line, cells }
    }
}

fn malformed(line: i64, message: impl Into<String>) -> Row {
    Row {
        line,
        cells: Err(vec![RowError {
            line,
            field: None,
            message: message.into(),
        }]),
    }
}

/// Why a file cannot be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Header(String),
    #[error("the file could not be read: {0}")]
    Read(String),
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Skips a UTF-8 byte order mark.
fn skip_bom(reader: &mut impl BufRead) -> std::io::Result<()> {
    if reader.fill_buf()?.starts_with(BOM) {
        reader.consume(BOM.len());
    }
    Ok(())
}

/// The columns of a CSV header row: known names (case and surrounding
/// blanks ignored), each once, `name` and `surname` among them.
pub fn csv_header(reader: impl Read) -> Result<Vec<Option<Column>>, FileError> {
    let mut reader = std::io::BufReader::new(reader);
    skip_bom(&mut reader).map_err(|e| FileError::Read(e.to_string()))?;
    let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let header = csv
        .byte_headers()
        .map_err(|e| FileError::Header(format!("the header row cannot be read: {e}")))?;
    columns_of(header)
}

/// The header's columns in order, `None` for a read-only one.
fn columns_of(header: &csv::ByteRecord) -> Result<Vec<Option<Column>>, FileError> {
    let mut columns = Vec::with_capacity(header.len());
    let mut names = Vec::with_capacity(header.len());
    for raw in header {
        let name = std::str::from_utf8(raw)
            .map_err(|_| FileError::Header("the header row is not valid UTF-8".into()))?
            .trim()
            .to_ascii_lowercase();
        if names.contains(&name) {
            return Err(FileError::Header(format!("column {name:?} appears twice")));
        }
        let column = Column::parse(&name);
        if column.is_none() && !READ_ONLY.contains(&name.as_str()) {
            return Err(FileError::Header(format!(
                "unknown column {name:?}; the columns are {COLUMN_NAMES} (and an export's read-only ones, ignored)"
            )));
        }
        columns.push(column);
        names.push(name);
    }
    for required in [Column::Name, Column::Surname] {
        if !columns.contains(&Some(required)) {
            return Err(FileError::Header(format!(
                "the header row has no {:?} column; it needs name and surname, and may have email, phone, notes and external_id",
                required.name()
            )));
        }
    }
    Ok(columns)
}

/// Every data row of a CSV file, in order, to `each`; stops early when
/// `each` returns `false`.
pub fn csv_rows(reader: impl Read, mut each: impl FnMut(Row) -> bool) -> Result<(), FileError> {
    let mut reader = std::io::BufReader::new(reader);
    skip_bom(&mut reader).map_err(|e| FileError::Read(e.to_string()))?;
    let newlines = Rc::new(RefCell::new(VecDeque::new()));
    let reader = Newlines {
        inner: reader,
        offset: 0,
        seen: newlines.clone(),
    };
    let mut csv = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
    let columns = columns_of(
        csv.byte_headers()
            .map_err(|e| FileError::Read(e.to_string()))?,
    )?;
    let mut record = csv::ByteRecord::new();
    let mut newlines_passed = 0i64;
    loop {
        match csv.read_byte_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(error) => return Err(FileError::Read(error.to_string())),
        }
        // A record after CRLF starts at the LF: count the newlines up to
        // and including its first byte.
        let start = record.position().map_or(0, |p| p.byte());
        let mut seen = newlines.borrow_mut();
        while seen.front().is_some_and(|&at| at <= start) {
            seen.pop_front();
            newlines_passed += 1;
        }
        drop(seen);
        let line = newlines_passed + 1;
        if !each(csv_row(line, &columns, &record)) {
            return Ok(());
        }
    }
}

/// Records where each newline is, for line numbers: the csv crate's own
/// count is one short after a CRLF header row.
struct Newlines<R> {
    inner: R,
    offset: u64,
    seen: Rc<RefCell<VecDeque<u64>>>,
}

impl<R: Read> Read for Newlines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        let mut seen = self.seen.borrow_mut();
        for (at, _) in buf[..read].iter().enumerate().filter(|(_, &b)| b == b'\n') {
            seen.push_back(self.offset + at as u64);
        }
        self.offset += read as u64;
        Ok(read)
    }
}

fn csv_row(line: i64, columns: &[Option<Column>], record: &csv::ByteRecord) -> Row {
    if record.len() != columns.len() {
        return malformed(
            line,
            format!(
                "has {} fields; the header row has {}",
                record.len(),
                columns.len()
            ),
        );
    }
    let mut cells = Cells::default();
    let mut errors = Vec::new();
    for (column, raw) in columns.iter().zip(record) {
        let Some(column) = *column else { continue };
        match std::str::from_utf8(raw) {
            Ok(text) => cells.set(column, Some(unguard(text).to_owned())),
            Err(_) => errors.push(RowError {
                line,
                field: Some(column.name().to_owned()),
                message: "is not valid UTF-8".into(),
            }),
        }
    }
    Row::checked(line, cells, errors)
}

/// The longest NDJSON line read; a longer one is rejected, not buffered.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Every non-blank line of an NDJSON file, as a row, to `each`; stops early
/// when `each` returns `false`.
pub fn ndjson_rows(reader: impl Read, mut each: impl FnMut(Row) -> bool) -> Result<(), FileError> {
    let mut reader = std::io::BufReader::new(reader);
    skip_bom(&mut reader).map_err(|e| FileError::Read(e.to_string()))?;
    let mut buffer = Vec::new();
    let mut line = 0i64;
    loop {
        line += 1;
        buffer.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buffer)
            .map_err(|e| FileError::Read(e.to_string()))?;
        if read == 0 {
            return Ok(());
        }
        let row = if buffer.len() > MAX_LINE_BYTES && !buffer.ends_with(b"\n") {
            skip_line(&mut reader).map_err(|e| FileError::Read(e.to_string()))?;
            malformed(line, format!("is longer than {MAX_LINE_BYTES} bytes"))
        } else if buffer.trim_ascii().is_empty() {
            continue;
        } else {
            json_row(line, buffer.trim_ascii())
        };
        if !each(row) {
            return Ok(());
        }
    }
}

fn skip_line(reader: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(());
        }
        match available.iter().position(|&b| b == b'\n') {
            Some(end) => {
                reader.consume(end + 1);
                return Ok(());
            }
            None => {
                let all = available.len();
                reader.consume(all);
            }
        }
    }
}

fn json_row(line: i64, bytes: &[u8]) -> Row {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return malformed(line, "is not valid UTF-8");
    };
    let object: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(text) {
        Ok(object) => object,
        Err(error) => return malformed(line, format!("is not a JSON object: {error}")),
    };
    let mut cells = Cells::default();
    let mut errors = Vec::new();
    for (key, value) in object {
        let field = |message: &str| RowError {
            line,
            field: Some(key.clone()),
            message: message.to_owned(),
        };
        let Some(column) = Column::parse(&key) else {
            if READ_ONLY.contains(&key.as_str()) {
                continue;
            }
            errors.push(field(&format!(
                "is not a customer field; the fields are {COLUMN_NAMES}"
            )));
            continue;
        };
        match value {
            serde_json::Value::String(text) => cells.set(column, Some(text)),
            serde_json::Value::Null => cells.set(column, None),
            _ => errors.push(field("must be a string or null")),
        }
    }
    Row::checked(line, cells, errors)
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;

use super::*;

fn csv(text: &[u8]) -> Vec<Row> {
    let mut rows = Vec::new();
    csv_rows(text, |row| {
        rows.push(row);
        true
    })
    .unwrap();
    rows
}

fn ndjson(text: &[u8]) -> Vec<Row> {
    let mut rows = Vec::new();
    ndjson_rows(text, |row| {
        rows.push(row);
        true
    })
    .unwrap();
    rows
}

fn reasons(row: &Row) -> Vec<(Option<&str>, &str)> {
    match &row.cells {
        Ok(_) => vec![],
        Err(errors) => errors
            .iter()
            .map(|e| (e.field.as_deref(), e.message.as_str()))
            .collect(),
    }
}

#[test]
fn a_header_names_known_columns_in_any_order_and_case() {
    let columns = csv_header(&b"\xEF\xBB\xBF Surname ,NAME,email\r\n"[..]).unwrap();
    assert_eq!(
        columns,
        [
            Some(Column::Surname),
            Some(Column::Name),
            Some(Column::Email)
        ]
    );
    let exported = csv_header(&b"id,name,surname,photo_id,created_at\n"[..]).unwrap();
    assert_eq!(
        exported,
        [None, Some(Column::Name), Some(Column::Surname), None, None]
    );
}

#[test]
fn a_header_with_an_unknown_repeated_or_missing_column_is_refused() {
    for header in [
        &b"name,surname,company\n"[..],
        b"name,surname,name\n",
        b"name,email\n",
        b"",
    ] {
        assert!(
            matches!(csv_header(header), Err(FileError::Header(_))),
            "{header:?}"
        );
    }
}

#[test]
fn quoted_fields_crlf_and_a_bom_are_read_with_the_line_each_row_starts_on() {
    let rows = csv(b"\xEF\xBB\xBFname,surname,notes\r\nAda,Lovelace,\"a, b\r\nc \"\"q\"\"\"\r\nAlan,Turing,\r\n");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].line, 2);
    let cells = rows[0].cells.as_ref().unwrap();
    assert_eq!(cells.text(Column::Notes), Some("a, b\r\nc \"q\""));
    assert_eq!(rows[1].line, 4);
    let cells = rows[1].cells.as_ref().unwrap();
    assert_eq!(cells.text(Column::Surname), Some("Turing"));
    // Given but empty: present, without text.
    assert_eq!(cells.get(Column::Notes), Some(None));
    assert_eq!(cells.get(Column::Email), None);
}

#[test]
fn a_row_with_the_wrong_field_count_or_bad_utf8_is_reported_not_fatal() {
    let rows = csv(b"name,surname\nA,B,C\nA,\xFF\nAda,Lovelace\n");
    assert_eq!(rows.len(), 3);
    assert_eq!(
        reasons(&rows[0]),
        [(None, "has 3 fields; the header row has 2")]
    );
    assert_eq!(reasons(&rows[1]), [(Some("surname"), "is not valid UTF-8")]);
    assert_eq!(rows[2].line, 4);
    assert!(rows[2].cells.is_ok());
}

#[test]
fn ndjson_lines_are_objects_of_string_or_null_fields() {
    let rows = ndjson(
        b"{\"name\":\"Ada\",\"surname\":\"Lovelace\",\"email\":null}\n\n[1]\n{\"name\":1,\"age\":\"3\"}\n\xFF\n",
    );
    assert_eq!(rows.len(), 4);
    let cells = rows[0].cells.as_ref().unwrap();
    assert_eq!(cells.text(Column::Name), Some("Ada"));
    assert_eq!(cells.get(Column::Email), Some(None));
    // Blank lines are skipped but still counted.
    assert_eq!(rows[1].line, 3);
    assert_eq!(reasons(&rows[1])[0].0, None);
    let mut fields: Vec<_> = reasons(&rows[2]).into_iter().map(|r| r.0).collect();
    fields.sort();
    assert_eq!(fields, [Some("age"), Some("name")]);
    assert_eq!(reasons(&rows[3]), [(None, "is not valid UTF-8")]);
}

#[test]
fn an_overlong_ndjson_line_is_rejected_and_the_next_one_read() {
    let mut file = vec![b'x'; MAX_LINE_BYTES + 10];
    file.extend_from_slice(b"\n{\"name\":\"A\",\"surname\":\"B\"}\n");
    let rows = ndjson(&file);
    assert_eq!(rows.len(), 2);
    assert!(rows[0].cells.is_err());
    assert_eq!(rows[1].line, 2);
    assert!(rows[1].cells.is_ok());
}

#[test]
fn an_exports_formula_guard_is_taken_off() {
    let rows = csv(b"name,surname,phone,notes\nA,B,'+1 555 0100,'x\n");
    let cells = rows[0].cells.as_ref().unwrap();
    assert_eq!(cells.text(Column::Phone), Some("+1 555 0100"));
    // Only a guard: a quote before anything else is the cell's own.
    assert_eq!(cells.text(Column::Notes), Some("'x"));
}

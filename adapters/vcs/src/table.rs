//! A strict reader of CSV records (RFC 4180), for the contact sheets VCS services upload.
//!
//! Lenient CSV readers accept what a person did not mean: a quote left open runs to the end of the file and
//! turns every row after it into one cell's text, so one person's note would be stored under another
//! person's contact. This reader refuses instead, naming the record and the cell: a quote never closed, a
//! quote inside an unquoted cell, or text after a cell's closing quote. A doubled quote (`""`) inside a
//! quoted cell is one quote; a quoted cell may hold commas and line breaks. Records end at `\n`, `\r\n` or
//! `\r`; a line with nothing on it holds no record.
//!
//! This module is not a CSV library: it splits records and cells and nothing else. Cells are bytes;
//! the caller decides what they mean.

/// Why a record could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuoteError {
    /// A quoted cell that is never closed.
    Unterminated,
    /// A quote inside an unquoted cell.
    Stray,
    /// Something other than a comma or the end of the record after a cell's closing quote.
    AfterClosing,
}

impl QuoteError {
    /// What the person who exported the sheet should fix; never quotes the cell.
    pub(crate) fn detail(self, line: usize) -> String {
        match self {
            Self::Unterminated => format!(
                "opens a quote (line {line}) that is never closed; nothing of the payload was accepted, since the \
                 rows after it would have been read as this cell's text"
            ),
            Self::Stray => format!(
                "holds a quote (line {line}) in a cell that does not start with one; quote the whole cell and \
                 double the quotes inside it"
            ),
            Self::AfterClosing => format!(
                "has text after its closing quote (line {line}); quote the whole cell and double the quotes \
                 inside it"
            ),
        }
    }
}

/// A record that could not be read: its 1-based number (the header is record 1), the 0-based index of the
/// cell, the 1-based line the problem is on, and what is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordError {
    pub(crate) record: usize,
    pub(crate) cell: usize,
    pub(crate) line: usize,
    pub(crate) error: QuoteError,
}

/// The records of `body` in order, each the 1-based line it starts on and its cells, or the first one
/// that cannot be read.
pub(crate) struct Records<'a> {
    body: &'a [u8],
    at: usize,
    line: usize,
    record: usize,
}

impl<'a> Records<'a> {
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Self { body, at: 0, line: 1, record: 0 }
    }

    /// Consumes a line break at the cursor, if there is one.
    fn line_break(&mut self) -> bool {
        match self.body.get(self.at) {
            Some(b'\n') => self.at += 1,
            Some(b'\r') => self.at += if self.body.get(self.at + 1) == Some(&b'\n') { 2 } else { 1 },
            _ => return false,
        }
        self.line += 1;
        true
    }

    /// Reads one cell at the cursor; the cursor is left on the comma, line break or end after it.
    fn cell(&mut self, cell: usize) -> Result<Vec<u8>, RecordError> {
        let fail = |this: &Self, error| RecordError { record: this.record, cell, line: this.line, error };
        let mut text = Vec::new();
        if self.body.get(self.at) != Some(&b'"') {
            while let Some(&byte) = self.body.get(self.at) {
                match byte {
                    b',' | b'\n' | b'\r' => break,
                    b'"' => return Err(fail(self, QuoteError::Stray)),
                    other => text.push(other),
                }
                self.at += 1;
            }
            return Ok(text);
        }
        let opened = self.line;
        self.at += 1;
        loop {
            match self.body.get(self.at) {
                None => return Err(RecordError { line: opened, ..fail(self, QuoteError::Unterminated) }),
                Some(b'"') if self.body.get(self.at + 1) == Some(&b'"') => {
                    text.push(b'"');
                    self.at += 2;
                }
                Some(b'"') => {
                    self.at += 1;
                    return match self.body.get(self.at) {
                        None | Some(b',' | b'\n' | b'\r') => Ok(text),
                        Some(_) => Err(fail(self, QuoteError::AfterClosing)),
                    };
                }
                Some(&byte) => {
                    if byte == b'\n' || (byte == b'\r' && self.body.get(self.at + 1) != Some(&b'\n')) {
                        self.line += 1;
                    }
                    text.push(byte);
                    self.at += 1;
                }
            }
        }
    }
}

impl Iterator for Records<'_> {
    type Item = Result<(usize, Vec<Vec<u8>>), RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        // A line with nothing on it holds no record.
        while self.line_break() {}
        if self.at >= self.body.len() {
            return None;
        }
        self.record += 1;
        let starts = self.line;
        let mut cells = Vec::new();
        loop {
            match self.cell(cells.len()) {
                Ok(text) => cells.push(text),
                Err(error) => {
                    // Nothing after an unreadable record can be trusted to start where it seems to.
                    self.at = self.body.len();
                    return Some(Err(error));
                }
            }
            if self.body.get(self.at) == Some(&b',') {
                self.at += 1;
                continue;
            }
            self.line_break();
            return Some(Ok((starts, cells)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &str) -> Vec<Result<Vec<String>, RecordError>> {
        Records::new(body.as_bytes())
            .map(|record| {
                record.map(|(_, cells)| cells.into_iter().map(|cell| String::from_utf8(cell).expect("UTF-8")).collect())
            })
            .collect()
    }

    fn cells(items: &[&str]) -> Result<Vec<String>, RecordError> {
        Ok(items.iter().map(|&item| item.to_owned()).collect())
    }

    #[test]
    fn reads_quoted_cells_with_commas_quotes_and_line_breaks() {
        let body = "a,b,c\r\n1,\"x, \"\"y\"\"\nz\",\n\n2,,\"\"";
        assert_eq!(read(body), vec![cells(&["a", "b", "c"]), cells(&["1", "x, \"y\"\nz", ""]), cells(&["2", "", ""])]);
    }

    #[test]
    fn an_unterminated_quote_is_refused_at_its_record_and_cell() {
        let body = "a,b,notes\n1,2,\"left open\n3,4,other person\n";
        let found = read(body);
        assert_eq!(found.len(), 2, "nothing is read after it: {found:?}");
        assert_eq!(found[1], Err(RecordError { record: 2, cell: 2, line: 2, error: QuoteError::Unterminated }));
    }

    #[test]
    fn a_stray_quote_is_refused() {
        let found = read("a,b\n1,say \"hi\"\n");
        assert_eq!(found[1], Err(RecordError { record: 2, cell: 1, line: 2, error: QuoteError::Stray }));
        let found = read("a,b\n\"1\"x,2\n");
        assert_eq!(found[1], Err(RecordError { record: 2, cell: 0, line: 2, error: QuoteError::AfterClosing }));
    }

    #[test]
    fn record_numbers_count_records_not_lines() {
        let found = read("a\n\"two\nlines\"\n\"open");
        assert_eq!(found[2], Err(RecordError { record: 3, cell: 0, line: 4, error: QuoteError::Unterminated }));
    }
}

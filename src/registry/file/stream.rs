//! The registry file parsed as it is read, into the view directly: a million apps are ~300 MiB
//! of TOML, which must never be held whole (nor as a parsed tree) beside the view they build.
//!
//! The text is cut at lines that open an array of tables (`[[`, after any indentation): the part
//! before the first such line is the header (every top-level key), and each later part, a batch
//! of `[[apps]]` tables, is parsed as a document of its own and added to the view. The cut never
//! makes a file acceptable that is not as a whole, nor changes what it means:
//!
//! - a cut inside a string (a multi-line one may hold such a line) leaves the part before it
//!   with an unterminated string, so that part, and the file, is refused; a cut inside an array
//!   leaves an unfinished array likewise;
//! - a cut at a real table header ends the previous table there, as TOML does: keys after a
//!   header always belong to it, so the header part holds every top-level key, and a batch can
//!   hold nothing but tables (`apps`, and only it, with `deny_unknown_fields` everywhere);
//! - an `apps` array written inline in the header cannot be extended by `[[apps]]` tables after
//!   it, so the two together are refused; a file with neither misses `apps`;
//! - a line starting with `[[` that is not cut at (the last, unterminated one) stays in its part.
//!
//! Lines split at `\n` bytes, which no multi-byte UTF-8 sequence contains, so each part is UTF-8
//! if and only if the file is. Errors name lines and columns of the whole file.

use serde::Deserialize;

use crate::registry::snapshot::{AppSnapshot, Hex};
use crate::registry::view::RegistryView;
use crate::registry::Snapshot;

/// A batch is parsed once it holds this many bytes (and the next `[[` line starts): large enough
/// that the per-document cost vanishes, small enough that its parsed tree is a rounding error.
const BATCH_BYTES: usize = 256 << 10;

/// The top-level keys: a [`Snapshot`] whose `apps` may follow as `[[apps]]` tables instead.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    block: u64,
    gateway_app_id: String,
    #[serde(default)]
    app_implementation: Option<Hex<20>>,
    os_images: Vec<Hex<32>>,
    kms_aggregated_mrs: Vec<Hex<32>>,
    kms_device_ids: Vec<Hex<32>>,
    #[serde(default)]
    apps: Option<Vec<AppSnapshot>>,
}

/// A part after the header: `[[apps]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    apps: Vec<AppSnapshot>,
}

/// What the header set up, once it is parsed.
struct Started {
    view: RegistryView,
    block: u64,
    /// Whether the header wrote `apps` inline (then no `[[apps]]` may follow).
    inline_apps: bool,
    /// Whether any batch of `[[apps]]` tables followed.
    tables: bool,
}

/// Builds a view from a registry file's bytes fed in any pieces.
pub(super) struct StreamParser {
    /// The unparsed part: from the start of the current header or batch.
    pending: Vec<u8>,
    /// How far `pending` has been searched for line starts.
    scanned: usize,
    /// The file line `pending` starts on (1-based).
    first_line: usize,
    /// Lines in `pending` before `scanned`.
    lines_scanned: usize,
    /// Whether any byte so far is not whitespace (a blank file is refused as empty).
    any_content: bool,
    state: Result<Option<Started>, String>,
}

impl StreamParser {
    pub(super) fn new() -> Self {
        StreamParser {
            pending: Vec::new(),
            scanned: 0,
            first_line: 1,
            lines_scanned: 0,
            any_content: false,
            state: Ok(None),
        }
    }

    /// Takes the next bytes of the file. After an error the rest is only skipped.
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        if self.state.is_err() {
            return;
        }
        self.any_content |= bytes.iter().any(|b| !b.is_ascii_whitespace());
        self.pending.extend_from_slice(bytes);
        // Every complete line: cut before those that open an array of tables.
        while let Some(newline) = self.pending[self.scanned..]
            .iter()
            .position(|&b| b == b'\n')
        {
            let line_start = self.scanned;
            self.scanned += newline + 1;
            let line = &self.pending[line_start..self.scanned];
            let opens_array_of_tables = line
                .iter()
                .skip_while(|b| matches!(b, b' ' | b'\t'))
                .take(2)
                .eq(b"[[".iter());
            let header_done = matches!(self.state, Ok(Some(_)));
            if opens_array_of_tables && (!header_done || line_start >= BATCH_BYTES) {
                self.parse_part(line_start);
                if self.state.is_err() {
                    return;
                }
                // The cut line is now the first of `pending`, already scanned.
                self.lines_scanned = 1;
            } else {
                self.lines_scanned += 1;
            }
        }
    }

    /// The view and its block, once the whole file was fed.
    pub(super) fn finish(mut self) -> Result<(RegistryView, u64), String> {
        if self.state.is_ok() && !self.any_content {
            return Err("the file is empty".to_owned());
        }
        self.parse_part(self.pending.len());
        let Started {
            mut view,
            block,
            inline_apps,
            tables,
        } = self.state?.ok_or("the file ends before its header")?;
        if !inline_apps && !tables {
            return Err("missing field `apps`".to_owned());
        }
        view.shrink_to_fit();
        Ok((view, block))
    }

    /// Parses `pending[..end]` (the header, or a batch once the header is done), then drops it.
    fn parse_part(&mut self, end: usize) {
        let outcome = match std::str::from_utf8(&self.pending[..end]) {
            Err(e) => Err(format!(
                "not UTF-8: {e} (in the part from line {})",
                self.first_line
            )),
            Ok(text) => match &mut self.state {
                Err(_) => return,
                Ok(None) => start(text, self.first_line).map(Some),
                Ok(Some(started)) => add_batch(started, text, self.first_line).map(|()| None),
            },
        };
        match outcome {
            Err(message) => self.state = Err(message),
            Ok(Some(started)) => self.state = Ok(Some(started)),
            Ok(None) => {}
        }
        self.first_line += self.lines_scanned;
        self.lines_scanned = 0;
        self.pending.drain(..end);
        self.scanned -= end.min(self.scanned);
    }
}

/// The header part: the view with the KMS's lists and any inline apps.
fn start(text: &str, first_line: usize) -> Result<Started, String> {
    let header: Header = toml::from_str(text).map_err(|e| located(&e, text, first_line))?;
    let inline_apps = header.apps.is_some();
    let snapshot = Snapshot {
        block: header.block,
        gateway_app_id: header.gateway_app_id,
        app_implementation: header.app_implementation,
        os_images: header.os_images,
        kms_aggregated_mrs: header.kms_aggregated_mrs,
        kms_device_ids: header.kms_device_ids,
        apps: header.apps.unwrap_or_default(),
    };
    Ok(Started {
        view: snapshot.to_view()?,
        block: snapshot.block,
        inline_apps,
        tables: false,
    })
}

fn add_batch(started: &mut Started, text: &str, first_line: usize) -> Result<(), String> {
    if started.inline_apps {
        return Err(format!(
            "line {first_line}: `apps` is written inline above; [[apps]] tables cannot extend it"
        ));
    }
    started.tables = true;
    let batch: Batch = toml::from_str(text).map_err(|e| located(&e, text, first_line))?;
    for app in &batch.apps {
        app.add_to(&mut started.view)?;
    }
    Ok(())
}

/// A TOML error of one part, with the line and column it has in the whole file.
fn located(error: &toml::de::Error, text: &str, first_line: usize) -> String {
    let Some(at) = error.span().map(|span| span.start.min(text.len())) else {
        return error.message().to_owned();
    };
    let before = &text.as_bytes()[..at];
    let line = first_line + before.iter().filter(|&&b| b == b'\n').count();
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = text[line_start..at.max(line_start)].chars().count() + 1;
    format!(
        "TOML parse error at line {line}, column {column}: {}",
        error.message()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::view::{AppList, KmsList};

    const HEADER: &str = "block = 7\ngateway_app_id = \"gw\"\nos_images = []\n\
                          kms_aggregated_mrs = []\nkms_device_ids = [\"0x{d}\"]\n";

    fn app(i: u8) -> String {
        format!(
            "[[apps]]\napp_id = \"0x{}\"\ncompose_hashes = [\"0x{}\"]\ndevice_ids = []\n\
             allow_any_device = true\nrequire_tcb_up_to_date = false\ncode = \"known\"\n",
            format!("{i:02x}").repeat(20),
            format!("{i:02x}").repeat(32),
        )
    }

    fn file(apps: impl IntoIterator<Item = u8>) -> String {
        let mut text = HEADER.replace("{d}", &"dd".repeat(32));
        for i in apps {
            text.push_str(&app(i));
        }
        text
    }

    /// Feeds `text` in pieces of `piece` bytes.
    fn parse_in_pieces(text: &str, piece: usize) -> Result<(RegistryView, u64), String> {
        let mut parser = StreamParser::new();
        for chunk in text.as_bytes().chunks(piece) {
            parser.feed(chunk);
        }
        parser.finish()
    }

    /// The block, each app with its sorted compose hashes, and the KMS device count.
    type Summary = (u64, Vec<(Vec<u8>, Vec<[u8; 32]>)>, usize);

    fn summary(view: &RegistryView, block: u64) -> Summary {
        let mut apps: Vec<_> = view
            .apps()
            .map(|app| {
                let mut hashes: Vec<[u8; 32]> =
                    app.values(AppList::ComposeHashes).copied().collect();
                hashes.sort_unstable();
                (app.app_id().to_vec(), hashes)
            })
            .collect();
        apps.sort_unstable();
        (block, apps, view.values(KmsList::KmsDeviceIds).count())
    }

    #[test]
    fn any_piece_size_and_batching_give_the_whole_files_view() {
        let text = file(1..=40);
        let whole: Snapshot = toml::from_str(&text).unwrap();
        let expected = whole.to_view().unwrap();
        let expected = summary(&expected, whole.block);
        for piece in [1, 7, 64, 4096, text.len()] {
            let (view, block) = parse_in_pieces(&text, piece).unwrap();
            assert_eq!(summary(&view, block), expected, "pieces of {piece}");
        }
    }

    #[test]
    fn a_cut_inside_a_multi_line_string_is_refused() {
        let text = file([1]).replace(
            "gateway_app_id = \"gw\"",
            "gateway_app_id = \"\"\"\n[[apps]]\n\"\"\"",
        );
        // Valid TOML as a whole (then refused for its content); never accepted in parts.
        let error = parse_in_pieces(&text, 5).unwrap_err();
        assert!(error.contains("TOML parse error at line 3"), "{error}");
    }

    #[test]
    fn inline_apps_cannot_be_extended_by_tables() {
        let text = format!("{}apps = []\n{}", file([]), app(1));
        let error = parse_in_pieces(&text, 3).unwrap_err();
        assert!(error.contains("written inline"), "{error}");
        assert!(toml::from_str::<Snapshot>(&text).is_err());
    }

    #[test]
    fn no_apps_at_all_misses_the_key_and_a_blank_file_is_empty() {
        let error = parse_in_pieces(&file([]), 4).unwrap_err();
        assert!(error.contains("missing field `apps`"), "{error}");
        assert_eq!(
            parse_in_pieces(" \n\t\n", 2).unwrap_err(),
            "the file is empty"
        );
    }

    #[test]
    fn errors_name_the_files_line() {
        let mut text = file(1..=3);
        text.push_str(&app(4).replace("code = \"known\"", "code = \"nope\""));
        let error = parse_in_pieces(&text, 10).unwrap_err();
        let line = text.lines().position(|l| l.contains("nope")).unwrap() + 1;
        assert!(
            error.contains(&format!("TOML parse error at line {line}, column")),
            "{error}"
        );
        let twice = format!("{}{}", file([1, 2]), app(1));
        let error = parse_in_pieces(&twice, 10).unwrap_err();
        assert!(error.contains("listed twice"), "{error}");
    }

    #[test]
    fn other_arrays_of_tables_are_refused() {
        let text = format!("{}[[os_images]]\nx = 1\n", file([1]));
        let error = parse_in_pieces(&text, 10).unwrap_err();
        assert!(error.contains("os_images"), "{error}");
        let not_utf8 = [file([1]).as_bytes(), &[0xff, b'\n']].concat();
        let mut parser = StreamParser::new();
        parser.feed(&not_utf8);
        assert!(parser.finish().unwrap_err().contains("not UTF-8"));
    }
}

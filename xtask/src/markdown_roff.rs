//! Markdown to a man page (roff with the `man` macros), for the subset the
//! docs use: headings, paragraphs, bullet and numbered lists (nested too),
//! tables, code blocks, inline code, emphasis and links.
//!
//! pulldown-cmark parses; this module only writes roff. The first `#`
//! heading is the page title and is left out (NAME has the summary), a `##`
//! heading is a section (`.SH`, upper case), deeper ones subsections
//! (`.SS`). A table becomes a tagged list, one `.TP` per row tagged with its
//! first cell, which reads well at 80 columns (a `tbl` table of long cells
//! does not). Links keep their text (and show an absolute URL). Anything
//! else (raw HTML, images, footnotes, …) is an error, so a construct the
//! page would render wrongly fails the package build instead of shipping.

use anyhow::bail;
use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// The `.TH` line and the fixed sections of a page.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The page name, e.g. `klosetd.conf`.
    pub name: &'a str,
    /// The section, e.g. `5`.
    pub section: &'a str,
    /// The `.TH` date, `YYYY-MM-DD`.
    pub date: &'a str,
    /// The NAME line after the dash.
    pub summary: &'a str,
    /// The `.TH` source field, e.g. `klosetd 0.1.0`.
    pub source: &'a str,
    /// The `.TH` manual field, e.g. `File Formats`.
    pub manual: &'a str,
    /// Pages listed under SEE ALSO: (name, section).
    pub see_also: &'a [(&'a str, &'a str)],
}

/// Escapes text for roff: the backslash, every non-ASCII character as a
/// `\[uXXXX]` glyph (groff's Unicode escape, so the page is ASCII), and
/// `-` as `\-` in code, where it must stay a copyable minus sign.
fn escape(text: &str, code: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' if code => out.push_str("\\-"),
            c if c.is_ascii() => out.push(c),
            c => out.push_str(&format!("\\[u{:04X}]", u32::from(c))),
        }
    }
    out
}

/// A heading's text as a quoted macro argument.
fn heading_text(text: &str) -> String {
    escape(text, false).replace('"', "\\(dq")
}

/// The roff being written, with what a line start needs.
#[derive(Debug, Default)]
struct Writer {
    out: String,
    /// Fonts opened by emphasis, strong text and inline code.
    fonts: Vec<char>,
}

impl Writer {
    fn at_line_start(&self) -> bool {
        self.out.is_empty() || self.out.ends_with('\n')
    }

    fn end_line(&mut self) {
        if !self.at_line_start() {
            self.out.push('\n');
        }
    }

    /// A request or macro on its own line.
    fn control(&mut self, line: &str) {
        self.end_line();
        self.out.push_str(line);
        self.out.push('\n');
    }

    /// Running text, already escaped. At a line start, leading blanks are
    /// dropped (roff would break the line) and a `.` or `'` is protected so
    /// that it is not read as a request.
    fn text(&mut self, escaped: &str) {
        let mut text = escaped;
        if self.at_line_start() {
            text = text.trim_start_matches(' ');
            if text.starts_with('.') || text.starts_with('\'') {
                self.out.push_str("\\&");
            }
        }
        self.out.push_str(text);
    }

    fn push_font(&mut self, font: char) {
        self.fonts.push(font);
        self.out.push_str(&format!("\\f{font}"));
    }

    fn pop_font(&mut self) {
        self.fonts.pop();
        let font = self.fonts.last().copied().unwrap_or('R');
        self.out.push_str(&format!("\\f{font}"));
    }
}

/// One table being collected: header cells, then rows, each cell as roff.
#[derive(Debug, Default)]
struct Table {
    head: Vec<String>,
    rows: Vec<Vec<String>>,
    in_head: bool,
}

impl Table {
    /// `.TP` per row: the first cell is the tag; with two columns the second
    /// is the body, with more each further cell is labelled by its header.
    fn render(&self, w: &mut Writer) {
        for row in &self.rows {
            w.control(".TP");
            w.text(row.first().map_or("", String::as_str));
            for (col, cell) in row.iter().enumerate().skip(1) {
                if col > 1 {
                    w.control(".br");
                }
                w.end_line();
                if self.head.len() > 2 {
                    let label = self.head.get(col).map_or("", String::as_str);
                    w.text(&format!("\\fI{label}:\\fR "));
                }
                w.text(cell);
            }
        }
    }
}

/// Converts `markdown` into a complete man page.
pub fn convert(markdown: &str, page: &Page<'_>) -> anyhow::Result<String> {
    let mut w = Writer::default();
    w.control(&format!(
        ".TH \"{}\" \"{}\" \"{}\" \"{}\" \"{}\"",
        page.name.to_uppercase(),
        page.section,
        page.date,
        page.source,
        page.manual
    ));
    w.control(".SH NAME");
    w.text(&format!(
        "{} \\- {}",
        escape(page.name, false),
        escape(page.summary, false)
    ));
    w.control(".SH DESCRIPTION");

    // Where running text goes: the page, or the table cell being built.
    let mut table: Option<Table> = None;
    let mut cell: Option<Writer> = None;
    let mut heading: Option<(HeadingLevel, String)> = None;
    // Per open list: the next number of an ordered list, None for bullets.
    let mut lists: Vec<Option<u64>> = Vec::new();
    // Whether the current list item has had a paragraph yet.
    let mut item_started = false;
    let mut link_urls: Vec<String> = Vec::new();
    let mut in_code = false;

    for event in Parser::new_ext(markdown, Options::ENABLE_TABLES) {
        if let Some((_, text)) = heading.as_mut() {
            match &event {
                Event::Text(t) | Event::Code(t) => {
                    text.push_str(t);
                    continue;
                }
                Event::End(TagEnd::Heading(_)) => {}
                Event::Start(Tag::Emphasis | Tag::Strong) | Event::End(_) => continue,
                other => bail!("unsupported markdown in a heading: {other:?}"),
            }
        }
        let target = cell.as_mut().unwrap_or(&mut w);
        match event {
            Event::Start(Tag::Heading { level, .. }) => heading = Some((level, String::new())),
            Event::End(TagEnd::Heading(_)) => {
                let Some((level, text)) = heading.take() else {
                    bail!("a heading ended that never started");
                };
                match level {
                    HeadingLevel::H1 => {}
                    HeadingLevel::H2 => {
                        w.control(&format!(".SH \"{}\"", heading_text(&text.to_uppercase())))
                    }
                    _ => w.control(&format!(".SS \"{}\"", heading_text(&text))),
                }
            }
            Event::Start(Tag::Paragraph) => {
                if lists.is_empty() {
                    w.control(".PP");
                } else if item_started {
                    w.control(".IP");
                }
                item_started = true;
            }
            Event::End(TagEnd::Paragraph) => w.end_line(),
            Event::Start(Tag::List(first)) => {
                if !lists.is_empty() {
                    w.control(".RS");
                }
                lists.push(first);
            }
            Event::End(TagEnd::List(_)) => {
                lists.pop();
                if !lists.is_empty() {
                    w.control(".RE");
                }
            }
            Event::Start(Tag::Item) => {
                let tag = match lists.last_mut() {
                    Some(Some(n)) => {
                        *n += 1;
                        format!(".IP {}. 4", *n - 1)
                    }
                    Some(None) => ".IP \\(bu 2".to_string(),
                    None => bail!("a list item outside a list"),
                };
                w.control(&tag);
                item_started = false;
            }
            Event::End(TagEnd::Item) => {
                w.end_line();
                item_started = false;
            }
            Event::Start(Tag::CodeBlock(kind)) => {
                if let CodeBlockKind::Indented = kind {
                    bail!("indented code block: use a fenced one");
                }
                w.control(if lists.is_empty() { ".PP" } else { ".IP" });
                w.control(".RS 4");
                w.control(".nf");
                in_code = true;
            }
            Event::End(TagEnd::CodeBlock) => {
                in_code = false;
                w.control(".fi");
                w.control(".RE");
            }
            Event::Start(Tag::Table(_)) => table = Some(Table::default()),
            Event::End(TagEnd::Table) => {
                let Some(t) = table.take() else {
                    bail!("a table ended that never started");
                };
                t.render(&mut w);
            }
            Event::Start(Tag::TableHead) => {
                if let Some(t) = table.as_mut() {
                    t.in_head = true;
                }
            }
            Event::End(TagEnd::TableHead) => {
                if let Some(t) = table.as_mut() {
                    t.in_head = false;
                }
            }
            Event::Start(Tag::TableRow) => {
                if let Some(t) = table.as_mut() {
                    t.rows.push(Vec::new());
                }
            }
            Event::End(TagEnd::TableRow) => {}
            Event::Start(Tag::TableCell) => cell = Some(Writer::default()),
            Event::End(TagEnd::TableCell) => {
                let (Some(t), Some(c)) = (table.as_mut(), cell.take()) else {
                    bail!("a table cell outside a table");
                };
                let text = c.out.trim().to_string();
                if t.in_head {
                    t.head.push(text);
                } else if let Some(row) = t.rows.last_mut() {
                    row.push(text);
                }
            }
            Event::Start(Tag::Emphasis) => target.push_font('I'),
            Event::Start(Tag::Strong) => target.push_font('B'),
            Event::End(TagEnd::Emphasis | TagEnd::Strong) => target.pop_font(),
            Event::Start(Tag::Link { dest_url, .. }) => link_urls.push(dest_url.to_string()),
            Event::End(TagEnd::Link) => {
                let url = link_urls.pop().unwrap_or_default();
                if url.starts_with("http://") || url.starts_with("https://") {
                    target.text(&format!(" <{}>", escape(&url, true)));
                }
            }
            Event::Text(text) => {
                if in_code {
                    // No-fill mode keeps the indentation; only a request
                    // character at a line start is protected.
                    for line in text.lines() {
                        w.end_line();
                        if line.starts_with('.') || line.starts_with('\'') {
                            w.out.push_str("\\&");
                        }
                        w.out.push_str(&escape(line, true));
                        w.out.push('\n');
                    }
                } else {
                    target.text(&escape(&text, false));
                }
            }
            Event::Code(code) => {
                target.push_font('B');
                target.text(&escape(&code, true));
                target.pop_font();
            }
            Event::SoftBreak => target.out.push('\n'),
            Event::HardBreak => target.control(".br"),
            other => bail!("unsupported markdown: {other:?}"),
        }
    }
    if !page.see_also.is_empty() {
        w.control(".SH \"SEE ALSO\"");
        let last = page.see_also.len() - 1;
        for (n, (name, section)) in page.see_also.iter().enumerate() {
            let comma = if n < last { "," } else { "" };
            w.control(&format!(".BR {} ({}){comma}", escape(name, false), section));
        }
    }
    w.end_line();
    Ok(w.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: Page<'static> = Page {
        name: "demo.conf",
        section: "5",
        date: "2026-01-02",
        summary: "a demo",
        source: "demo 1.0",
        manual: "File Formats",
        see_also: &[("demo", "8"), ("democtl", "1")],
    };

    fn body(md: &str) -> String {
        let page = convert(md, &PAGE).expect("convert");
        let start = page.find(".SH DESCRIPTION\n").expect("DESCRIPTION") + 16;
        let end = page.find(".SH \"SEE ALSO\"").expect("SEE ALSO");
        page[start..end].to_string()
    }

    #[test]
    fn title_name_and_see_also() {
        let page = convert("# Title\n\nText.\n", &PAGE).expect("convert");
        assert!(page.starts_with(
            ".TH \"DEMO.CONF\" \"5\" \"2026-01-02\" \"demo 1.0\" \"File Formats\"\n.SH NAME\ndemo.conf \\- a demo\n"
        ));
        assert!(page.ends_with(".SH \"SEE ALSO\"\n.BR demo (8),\n.BR democtl (1)\n"));
        assert!(!page.contains("Title"), "the H1 is the title, not repeated");
    }

    #[test]
    fn headings_paragraphs_and_inline_fonts() {
        assert_eq!(
            body(
                "## The `[daemon]` table\n\nSome *emphasis*, **strong `code`** text\nwrapped.\n\n### Sub\n\nMore.\n"
            ),
            ".SH \"THE [DAEMON] TABLE\"\n.PP\nSome \\fIemphasis\\fR, \\fBstrong \\fBcode\\fB\\fR text\nwrapped.\n.SS \"Sub\"\n.PP\nMore.\n"
        );
    }

    #[test]
    fn escapes_backslashes_dashes_in_code_unicode_and_leading_dots() {
        assert_eq!(
            body("Use `--config` \\\\ a-b … ≥ 1\n.starts with a dot\n"),
            ".PP\nUse \\fB\\-\\-config\\fR \\e a-b \\[u2026] \\[u2265] 1\n\\&.starts with a dot\n"
        );
    }

    #[test]
    fn lists_nested_and_numbered() {
        assert_eq!(
            body("- one\n- two\n  - inner\n\n1. first\n2. second\n"),
            ".IP \\(bu 2\none\n.IP \\(bu 2\ntwo\n.RS\n.IP \\(bu 2\ninner\n.RE\n.IP 1. 4\nfirst\n.IP 2. 4\nsecond\n"
        );
    }

    #[test]
    fn loose_list_items_with_two_paragraphs() {
        assert_eq!(
            body("- para one\n\n  para two\n\n- next\n"),
            ".IP \\(bu 2\npara one\n.IP\npara two\n.IP \\(bu 2\nnext\n"
        );
    }

    #[test]
    fn code_blocks_keep_lines_and_protect_requests() {
        assert_eq!(
            body("```toml\n[daemon]\n.x = \"a\\b\"\n  indented = 1\n```\n"),
            ".PP\n.RS 4\n.nf\n[daemon]\n\\&.x = \"a\\eb\"\n  indented = 1\n.fi\n.RE\n"
        );
    }

    #[test]
    fn tables_become_tagged_paragraphs() {
        assert_eq!(
            body("| change | effect |\n| --- | --- |\n| `a` added | runs |\n| b | stops |\n"),
            ".TP\n\\fBa\\fR added\nruns\n.TP\nb\nstops\n"
        );
        assert_eq!(
            body(
                "| key | default | meaning |\n| --- | --- | --- |\n| `listen` | `\"x\"` | where |\n"
            ),
            ".TP\n\\fBlisten\\fR\n\\fIdefault:\\fR \\fB\"x\"\\fR\n.br\n\\fImeaning:\\fR where\n"
        );
    }

    #[test]
    fn links_keep_text_and_absolute_urls() {
        assert_eq!(
            body(
                "See [here](#anchor), [docs](integrations/README.md) and [site](https://example.org/a-b).\n"
            ),
            ".PP\nSee here, docs and site <https://example.org/a\\-b>.\n"
        );
    }

    #[test]
    fn unsupported_markdown_is_an_error() {
        for md in [
            "<div>raw</div>\n",
            "text <b>inline</b>\n",
            "![img](a.png)\n",
            "    indented code\n",
        ] {
            assert!(convert(md, &PAGE).is_err(), "{md:?} must be refused");
        }
    }

    #[test]
    fn the_configuration_reference_converts() {
        let md = include_str!("../../docs/configuration.md");
        let page = convert(md, &PAGE).expect("docs/configuration.md converts");
        assert!(page.is_ascii());
        assert!(page.contains(".SH \"HOW THE DIRECTORY IS READ\"\n"));
        assert!(page.contains(".TP\n\\fBmax_concurrent_tasks\\fR\n"));
    }
}

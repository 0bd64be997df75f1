//! `scrim man`: manual pages in roff, from the clap definitions in
//! [`super::args`] (the same text as `--help`), so they never fall behind.
//!
//! clap_mangen writes the sections; the examples are written here instead:
//! clap_mangen fills them as running text, which joins the lines of every
//! example into one paragraph.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_mangen::Man;

use super::args::Cli;

/// Prints scrim(1), or `command`'s page; with `dir`, writes every page
/// there instead.
pub fn run(command: Option<&str>, dir: Option<&Path>) -> ExitCode {
    let top = built();
    if let Some(dir) = dir {
        return write_all(&top, dir);
    }
    let page = match command {
        Some(name) => match top.find_subcommand(name) {
            Some(c) => c.clone(),
            // clap accepts only the names in `args::COMMANDS`.
            None => {
                eprintln!("scrim man: no command \"{name}\"");
                return ExitCode::from(2);
            }
        },
        None => top,
    };
    let mut text = Vec::new();
    if let Err(e) = render(&page, &mut text) {
        eprintln!("scrim: {e}");
        return ExitCode::from(2);
    }
    match std::io::stdout().lock().write_all(&text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scrim: {e}");
            ExitCode::from(2)
        }
    }
}

/// The command line as clap builds it for parsing: subcommands know their
/// full name (`scrim rewrite`, page `scrim-rewrite`). The `help`
/// subcommand is left out: it has no page.
fn built() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Writes scrim.1 and scrim-COMMAND.1 for every command into `dir`.
fn write_all(top: &clap::Command, dir: &Path) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("{}: {e}", dir.display());
        return ExitCode::from(2);
    }
    for page in std::iter::once(top).chain(top.get_subcommands()) {
        let path = dir.join(Man::new(page.clone()).get_filename());
        let mut text = Vec::new();
        let written = render(page, &mut text).and_then(|()| std::fs::write(&path, &text));
        if let Err(e) = written {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
        println!("{}", path.display());
    }
    ExitCode::SUCCESS
}

/// One page: clap_mangen's sections (each opens with the same two-line
/// preamble; roff reads it as often as it comes), then the examples and
/// SEE ALSO. The version is in the footer, not a section of its own.
fn render(cmd: &clap::Command, w: &mut dyn Write) -> std::io::Result<()> {
    // Every page carries the version in its footer (only the top command
    // has one in clap).
    let man = Man::new(cmd.clone()).source(format!("scrim {}", env!("CARGO_PKG_VERSION")));
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    man.render_options_section(w)?;
    if cmd.has_subcommands() {
        man.render_subcommands_section(w)?;
    }
    if let Some(text) = cmd.get_after_help() {
        writeln!(w, ".SH EXAMPLES")?;
        let text = text.to_string();
        // The section's name says it already.
        let text = text.strip_prefix("Examples:\n").unwrap_or(&text);
        // Indented lines (commands, rule-file snippets) as written, one per
        // line; the prose between them filled to the terminal's width.
        let mut nofill = false;
        for line in text.lines() {
            if line.trim().is_empty() {
                if nofill {
                    writeln!(w, ".fi")?;
                    nofill = false;
                }
                writeln!(w, ".PP")?;
                continue;
            }
            let indented = line.starts_with("  ");
            if indented != nofill {
                writeln!(w, "{}", if indented { ".nf" } else { ".fi" })?;
                nofill = indented;
            }
            writeln!(w, "{}", verbatim(line))?;
        }
        if nofill {
            writeln!(w, ".fi")?;
        }
    }
    writeln!(w, ".SH SEE ALSO")?;
    let pages: Vec<String> = if cmd.has_subcommands() {
        cmd.get_subcommands()
            .map(|c| format!("\\fBscrim\\-{}\\fR(1)", c.get_name()))
            .collect()
    } else {
        vec!["\\fBscrim\\fR(1)".to_string()]
    };
    writeln!(w, "{}", pages.join(", "))?;
    writeln!(
        w,
        ".PP\nREADME.md and docs/ in the source: the rule-file reference (docs/rules.md), \
         operations (docs/operations.md) and the rule authors' tools (docs/cli.md)."
    )
}

/// A line of text as roff prints its words as written: a
/// backslash is roff's escape, a line starting with `.` or `'` would be a
/// request, and `-` is written `\-` so that options paste as typed.
fn verbatim(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    if line.starts_with(['.', '\'']) {
        out.push_str("\\&");
    }
    for c in line.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::verbatim;

    #[test]
    fn verbatim_lines_cannot_become_requests_or_escapes() {
        assert_eq!(verbatim(".SH x"), "\\&.SH x");
        assert_eq!(verbatim("'br"), "\\&'br");
        assert_eq!(verbatim("a\\fBb"), "a\\efBb");
        assert_eq!(verbatim("  scrim --x a-b"), "  scrim \\-\\-x a\\-b");
    }
}

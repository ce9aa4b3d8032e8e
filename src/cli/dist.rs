//! What a distribution needs from the command line itself: `pigeon
//! completions SHELL` (clap_complete) and `pigeon man` (clap_mangen), both
//! generated from the one clap definition (`cli::command()`), so they never
//! drift from the real flags. Neither touches the home or the network.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use clap_mangen::roff::{bold, roman, Roff};

use super::command;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pigeon completions bash > ~/.local/share/bash-completion/completions/pigeon\n  pigeon completions zsh > ~/.zfunc/_pigeon     # with fpath+=(~/.zfunc) before compinit\n  pigeon completions fish > ~/.config/fish/completions/pigeon.fish"
)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  pigeon man | man -l -                      # read it without installing it\n  pigeon man --dir ~/.cargo/share/man/man1   # pigeon.1, pigeon-send.1, …: man pigeon-send"
)]
pub struct ManArgs {
    /// Write pigeon.1 and one page per subcommand (pigeon-send.1, …) into this directory
    /// instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `pigeon completions SHELL`: the script on stdout.
pub fn run_completions(a: &CompletionsArgs) -> Result<ExitCode> {
    let mut cmd = command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(a.shell, &mut cmd, "pigeon", &mut out);
    out.flush().context("writing the completions")?;
    Ok(ExitCode::SUCCESS)
}

/// `pigeon man [--dir DIR]`: the main page on stdout, or every page into DIR.
pub fn run_man(a: &ManArgs) -> Result<ExitCode> {
    let root = root_command();
    match &a.dir {
        None => {
            let page = render(&root, None)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&page).and_then(|()| out.flush()).context("writing the manual page")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            write_pages(&root, None, dir)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The whole command tree, built (so subcommands carry their display
/// names, `pigeon-send`, and the flags each takes), without clap's `help`
/// subcommand (a page of its own would say nothing).
fn root_command() -> clap::Command {
    let mut cmd = command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Writes the page of `cmd` and of each of its subcommands into `dir`,
/// printing each path written.
fn write_pages(cmd: &clap::Command, parent: Option<&str>, dir: &Path) -> Result<()> {
    let name = page_name(cmd);
    let path = dir.join(format!("{name}.1"));
    let page = render(cmd, parent)?;
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    println!("{}", path.display());
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, Some(&name), dir)?;
    }
    Ok(())
}

/// `pigeon`, `pigeon-send`, `pigeon-status-away`: clap's display name of a
/// built subcommand.
fn page_name(cmd: &clap::Command) -> String {
    cmd.get_display_name().unwrap_or_else(|| cmd.get_name()).to_string()
}

/// One page: clap_mangen's sections, the `after_help` examples kept line by
/// line (EXAMPLES), and SEE ALSO naming the parent page and the subcommands'.
fn render(cmd: &clap::Command, parent: Option<&str>) -> Result<Vec<u8>> {
    let name = page_name(cmd);
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    // The title by hand: clap_mangen writes an empty date as nothing, which
    // shifts the source and manual into the wrong fields of `.TH`.
    writeln!(
        out,
        ".TH {} 1 \"\" \"pigeon {}\" \"User Commands\"",
        name.replace('-', "\\-"),
        env!("CARGO_PKG_VERSION")
    )?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    let subs: Vec<String> = cmd.get_subcommands().filter(|s| !s.is_hide_set()).map(page_name).collect();
    if !subs.is_empty() {
        man.render_subcommands_section(&mut out)?;
    }
    let mut roff = Roff::default();
    if let Some(after) = cmd.get_after_long_help().or_else(|| cmd.get_after_help()) {
        roff.control("SH", ["EXAMPLES"]);
        // No filling: each example stays on its own line, as in --help.
        roff.control("nf", []);
        for line in after.to_string().lines().filter(|l| !matches!(*l, "Examples:" | "Example:")) {
            roff.text([roman(line)]);
        }
        roff.control("fi", []);
    }
    let see_also: Vec<String> = parent.into_iter().map(str::to_string).chain(subs).collect();
    if !see_also.is_empty() {
        roff.control("SH", ["SEE ALSO"]);
        // Page names are neither hyphenated nor spread out to the margin.
        roff.control("nh", []);
        roff.control("ad", ["l"]);
        let mut refs = Vec::new();
        for (i, n) in see_also.iter().enumerate() {
            refs.push(bold(n.as_str()));
            refs.push(roman(if i + 1 < see_also.len() { "(1), " } else { "(1)" }));
        }
        roff.text(refs);
        roff.control("ad", []);
        roff.control("hy", []);
    }
    roff.to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    Ok(dedup_preamble(out))
}

/// Each of clap_mangen's sections comes with roff's two-line preamble (the
/// `Aq` string); one, at the top, is enough.
fn dedup_preamble(page: Vec<u8>) -> Vec<u8> {
    const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";
    let text = String::from_utf8_lossy(&page);
    let body = text.replace(PREAMBLE, "");
    // After `.TH` (its first line), before any section uses \*(Aq.
    match body.split_once('\n') {
        Some((th, rest)) => format!("{th}\n{PREAMBLE}{rest}").into_bytes(),
        None => body.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_has_a_page_name_under_pigeon() {
        let root = root_command();
        assert_eq!(page_name(&root), "pigeon");
        let names: Vec<String> = root.get_subcommands().map(page_name).collect();
        assert!(names.contains(&"pigeon-send".to_string()), "{names:?}");
        assert!(!names.contains(&"pigeon-help".to_string()), "{names:?}");
    }

    #[test]
    fn main_page_refers_to_subcommand_pages() {
        let page = String::from_utf8(render(&root_command(), None).unwrap()).unwrap();
        assert!(page.starts_with(".TH pigeon 1"), "{}", &page[..80]);
        assert!(page.contains(".SH \"SEE ALSO\""), "{page}");
        assert!(page.contains("\\fBpigeon\\-send\\fR(1)"), "{page}");
        assert_eq!(page.matches(".ds Aq").count(), 2, "one preamble: {page}");
    }
}

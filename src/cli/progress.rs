//! The one progress bar every command shows: on stderr when it is a terminal, hidden otherwise
//! (logs and pipes get the printed lines only).

/// A progress bar with this indicatif template, drawn on stderr only when it is a terminal.
pub fn progress_bar(template: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::hidden();
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

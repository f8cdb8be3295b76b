//! Every style `memwatch top` draws with, in one place: what a colour means is decided here.
use ratatui::style::{Color, Modifier, Style};

/// Titles and column headers.
pub fn bold() -> Style {
    Style::default().add_modifier(Modifier::BOLD)
}

/// The header of the column the table is sorted by.
pub fn sorted_header() -> Style {
    bold().add_modifier(Modifier::UNDERLINED)
}

/// A container at risk of an OOM kill ([`crate::risk`]) or under a warning.
pub fn danger() -> Style {
    bold().fg(Color::Red)
}

/// A container with a recent OOM kill.
pub fn oomed() -> Style {
    bold().fg(Color::Magenta)
}

/// The selected row; and the footer bar.
pub fn reversed() -> Style {
    Style::default().add_modifier(Modifier::REVERSED)
}

/// The filter being typed or applied.
pub fn filter() -> Style {
    Style::default().fg(Color::Yellow)
}

/// A status message (the daemon is down, a note).
pub fn status() -> Style {
    Style::default().fg(Color::Black).bg(Color::Yellow)
}

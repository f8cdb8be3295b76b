//! Keys to actions: pure functions, so every binding is unit-tested.
use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Up,
    Down,
    PageUp,
    PageDown,
    First,
    Last,
    /// Drill into the selected container.
    Open,
    /// Leave the detail view, the help, or clear the filter.
    Back,
    SortNext,
    SortPrev,
    Reverse,
    FilterStart,
    FilterChar(char),
    FilterBackspace,
    FilterDone,
    Help,
    Nothing,
}

/// Whether this event ends the program whatever the mode: Ctrl-C.
pub fn is_interrupt(ev: &Event) -> bool {
    matches!(ev, Event::Key(KeyEvent { code: KeyCode::Char('c'), modifiers, kind: KeyEventKind::Press, .. }) if modifiers.contains(KeyModifiers::CONTROL))
}

/// The action for a key, given whether the filter is being typed.
pub fn action(ev: &Event, editing_filter: bool) -> Action {
    if is_interrupt(ev) {
        return Action::Quit;
    }
    let Event::Key(KeyEvent { code, kind: KeyEventKind::Press, .. }) = ev else { return Action::Nothing };
    if editing_filter {
        return match code {
            KeyCode::Enter => Action::FilterDone,
            KeyCode::Esc => Action::Back,
            KeyCode::Backspace => Action::FilterBackspace,
            KeyCode::Char(c) => Action::FilterChar(*c),
            _ => Action::Nothing,
        };
    }
    match code {
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Action::First,
        KeyCode::End | KeyCode::Char('G') => Action::Last,
        KeyCode::Enter => Action::Open,
        KeyCode::Esc | KeyCode::Backspace => Action::Back,
        KeyCode::Char('>') | KeyCode::Right => Action::SortNext,
        KeyCode::Char('<') | KeyCode::Left => Action::SortPrev,
        KeyCode::Char('r') => Action::Reverse,
        KeyCode::Char('/') => Action::FilterStart,
        KeyCode::Char('?') | KeyCode::Char('h') => Action::Help,
        _ => Action::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> Event {
        Event::Key(KeyEvent::new(c, KeyModifiers::NONE))
    }

    #[test]
    fn quit_keys() {
        assert_eq!(action(&key(KeyCode::Char('q')), false), Action::Quit);
        let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert!(is_interrupt(&ctrl_c));
        assert_eq!(action(&ctrl_c, true), Action::Quit, "even while typing a filter");
        assert_eq!(action(&key(KeyCode::Char('q')), true), Action::FilterChar('q'), "q is text in the filter");
    }

    #[test]
    fn navigation_sorting_and_filter() {
        assert_eq!(action(&key(KeyCode::Down), false), Action::Down);
        assert_eq!(action(&key(KeyCode::Char('k')), false), Action::Up);
        assert_eq!(action(&key(KeyCode::Enter), false), Action::Open);
        assert_eq!(action(&key(KeyCode::Char('>')), false), Action::SortNext);
        assert_eq!(action(&key(KeyCode::Char('r')), false), Action::Reverse);
        assert_eq!(action(&key(KeyCode::Char('/')), false), Action::FilterStart);
        assert_eq!(action(&key(KeyCode::Enter), true), Action::FilterDone);
        assert_eq!(action(&key(KeyCode::Esc), true), Action::Back);
        assert_eq!(action(&key(KeyCode::Char('?')), false), Action::Help);
    }

    #[test]
    fn unknown_keys_do_nothing() {
        for c in [KeyCode::Char('x'), KeyCode::F(5), KeyCode::Tab, KeyCode::Insert] {
            assert_eq!(action(&key(c), false), Action::Nothing, "{c:?}");
        }
        assert_eq!(action(&Event::FocusGained, false), Action::Nothing);
        assert_eq!(action(&Event::Resize(80, 24), false), Action::Nothing);
    }
}

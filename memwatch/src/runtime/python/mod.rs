//! Python (CPython): recognised by its executable (`python3`, `python3.11`) or the library it
//! maps (`libpython3.*`). Python has no heap limit of its own: its memory is glibc's malloc's,
//! whose per-thread arenas are what the advice is about (see [`super::malloc`]).

use serde::{Deserialize, Serialize};

use super::{Executable, Facts, Process, Runtime, RuntimeId};
use crate::{parse::smaps::Mapping, runtime::layout::Class};

/// What memwatch reads of a Python process: its version, from the executable's name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PythonFacts {
    pub version: Option<String>,
}

pub struct Python;

pub static PYTHON: Python = Python;

/// `python3`, `python3.11` (the version after `python`, if any).
fn version_of_name(name: &str) -> Option<Option<String>> {
    let rest = name.strip_prefix("python")?;
    if rest.is_empty() {
        return Some(None);
    }
    (rest.starts_with('3') && rest.chars().all(|c| c.is_ascii_digit() || c == '.')).then(|| Some(rest.to_string()))
}

impl Runtime for Python {
    fn id(&self) -> RuntimeId {
        RuntimeId::Python
    }

    fn detect(&self, exe: &Executable<'_>) -> bool {
        exe.file_name().is_some_and(|n| version_of_name(n).is_some())
    }

    fn detect_mapped(&self, libraries: &[String]) -> bool {
        libraries.iter().any(|l| l.starts_with("libpython3"))
    }

    fn read(&self, p: &Process<'_>) -> Option<Facts> {
        Some(Facts::Python(PythonFacts { version: p.exe_name.and_then(version_of_name).flatten() }))
    }

    fn classify(&self, _: Option<&Facts>, _: &Mapping) -> Option<Class> {
        None
    }

    fn describe(&self, facts: &Facts) -> String {
        let Facts::Python(p) = facts else { return String::new() };
        format!(
            "It is Python{}: Python has no heap limit of its own; its objects live in glibc's malloc arenas.",
            p.version.as_deref().map(|v| format!(" {v}")).unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert_eq!(super::version_of_name("python3.11"), Some(Some("3.11".into())));
        assert_eq!(super::version_of_name("python3"), Some(Some("3".into())));
        assert_eq!(super::version_of_name("python"), Some(None));
        assert_eq!(super::version_of_name("pythonista"), None);
        assert_eq!(super::version_of_name("node"), None);
    }
}

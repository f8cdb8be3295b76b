//! Parser for tracefs `events/<category>/<event>/format` files: field names, offsets, sizes.

use thiserror::Error;

/// One `field:` line of a format file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The C declaration without the name, e.g. `unsigned long`, `__data_loc char[]`.
    pub ctype: String,
    pub offset: u16,
    pub size: u16,
    pub signed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Format {
    pub name: String,
    pub id: Option<u32>,
    pub fields: Vec<Field>,
    /// The `print fmt:` line, which says units the fields do not (e.g. `total-vm=%lukB`).
    pub print_fmt: String,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("line {line}: malformed field description: {text:?}")]
    Field { line: usize, text: String },
    #[error("no fields found")]
    Empty,
}

impl Format {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// Parses a whole format file. Lines other than `name:`, `ID:` and `field:` are ignored, so
/// a newer kernel's extra lines break nothing; a `field:` line that does not parse is an error.
pub fn parse(text: &str) -> Result<Format, FormatError> {
    let mut fmt = Format::default();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix("name:") {
            fmt.name = name.trim().to_string();
        } else if let Some(id) = line.strip_prefix("ID:") {
            fmt.id = id.trim().parse().ok();
        } else if let Some(p) = line.strip_prefix("print fmt:") {
            fmt.print_fmt = p.trim().to_string();
        } else if line.starts_with("field:") {
            let field = parse_field(line).ok_or_else(|| FormatError::Field { line: i + 1, text: raw.to_string() })?;
            fmt.fields.push(field);
        }
    }
    if fmt.fields.is_empty() {
        return Err(FormatError::Empty);
    }
    Ok(fmt)
}

/// `field:unsigned long len;\toffset:24;\tsize:8;\tsigned:0;`
fn parse_field(line: &str) -> Option<Field> {
    let mut decl = None;
    let (mut offset, mut size, mut signed) = (None, None, None);
    for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once(':')?;
        match key.trim() {
            "field" => decl = Some(value.trim()),
            "offset" => offset = value.trim().parse().ok(),
            "size" => size = value.trim().parse().ok(),
            "signed" => signed = value.trim().parse::<u8>().ok().map(|s| s != 0),
            _ => {}
        }
    }
    let decl = decl?;
    let (ctype, name) = decl.rsplit_once(char::is_whitespace)?;
    // `char comm[16]` names the field `comm`; `__data_loc char[] comm` already does.
    let name = name.split('[').next()?.trim_start_matches('*');
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some(Field { name: name.to_string(), ctype: ctype.trim().to_string(), offset: offset?, size: size?, signed: signed.unwrap_or(false) })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from Linux 6.18.
    const MARK_VICTIM_6_18: &str = "name: mark_victim
ID: 517
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] comm;\toffset:12;\tsize:4;\tsigned:0;
\tfield:unsigned long total_vm;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned long anon_rss;\toffset:24;\tsize:8;\tsigned:0;
\tfield:unsigned long file_rss;\toffset:32;\tsize:8;\tsigned:0;
\tfield:unsigned long shmem_rss;\toffset:40;\tsize:8;\tsigned:0;
\tfield:uid_t uid;\toffset:48;\tsize:4;\tsigned:0;
\tfield:unsigned long pgtables;\toffset:56;\tsize:8;\tsigned:0;
\tfield:short oom_score_adj;\toffset:64;\tsize:2;\tsigned:1;

print fmt: \"pid=%d comm=%s total-vm=%lukB anon-rss=%lukB file-rss:%lukB shmem-rss:%lukB uid=%u pgtables=%lukB oom_score_adj=%hd\", REC->pid, __get_str(comm), REC->total_vm, REC->anon_rss, REC->file_rss, REC->shmem_rss, REC->uid, REC->pgtables, REC->oom_score_adj
";

    // Kernels before 5.x: mark_victim has only the pid.
    const MARK_VICTIM_OLD: &str = "name: mark_victim
ID: 402
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int pid;\toffset:8;\tsize:4;\tsigned:1;

print fmt: \"pid=%d\", REC->pid
";

    #[test]
    fn parses_new_mark_victim() {
        let f = parse(MARK_VICTIM_6_18).unwrap();
        assert_eq!(f.name, "mark_victim");
        assert_eq!(f.id, Some(517));
        assert_eq!(f.fields.len(), 13);
        let comm = f.field("comm").unwrap();
        assert_eq!((comm.offset, comm.size, comm.ctype.as_str()), (12, 4, "__data_loc char[]"));
        let adj = f.field("oom_score_adj").unwrap();
        assert_eq!((adj.offset, adj.size, adj.signed), (64, 2, true));
        assert!(f.print_fmt.contains("total-vm=%lukB"));
    }

    #[test]
    fn parses_old_mark_victim_with_only_pid() {
        let f = parse(MARK_VICTIM_OLD).unwrap();
        assert_eq!(f.field("pid").map(|p| p.offset), Some(8));
        assert!(f.field("comm").is_none());
        assert!(f.field("total_vm").is_none());
    }

    #[test]
    fn array_fields_are_named_without_brackets() {
        let f = parse("\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n").unwrap();
        assert_eq!(f.fields[0].name, "comm");
        assert_eq!(f.fields[0].ctype, "char");
    }

    #[test]
    fn unknown_keys_and_lines_are_skipped() {
        let f = parse("weird: thing\n\tfield:int x;\toffset:8;\tsize:4;\tsigned:1;\tfuture:7;\n").unwrap();
        assert_eq!(f.field("x").unwrap().offset, 8);
    }

    #[test]
    fn garbled_field_is_an_error_with_its_line() {
        let err = parse("name: x\n\tfield:int pid;\toffset:eight;\tsize:4;\n").unwrap_err();
        assert!(matches!(err, FormatError::Field { line: 2, .. }), "{err:?}");
        assert!(matches!(parse("\tfield:;\toffset:8;\tsize:4;\n"), Err(FormatError::Field { .. })));
    }

    #[test]
    fn empty_or_truncated_file_is_an_error() {
        assert_eq!(parse(""), Err(FormatError::Empty));
        assert_eq!(parse("name: mark_victim\nID: 5\nformat:\n"), Err(FormatError::Empty));
    }
}

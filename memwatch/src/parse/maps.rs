//! `/proc/<pid>/maps`: each mapping's range, permissions, file offset, device, inode and path.
//! Pure; a malformed line is skipped (a mapping torn while read).

/// One mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub perms: [u8; 4],
    /// Offset in the file of the mapping's start.
    pub offset: u64,
    /// (major, minor) of the file's device.
    pub dev: (u32, u32),
    pub inode: u64,
    /// The file's path, a `[name]` for the kernel's, empty for anonymous memory.
    pub path: String,
}

impl MapEntry {
    pub fn executable(&self) -> bool {
        self.perms[2] == b'x'
    }

    pub fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
}

/// Parses a maps file.
pub fn maps(text: &str) -> Vec<MapEntry> {
    text.lines().filter_map(line).collect()
}

fn line(l: &str) -> Option<MapEntry> {
    let mut f = l.splitn(6, ' ');
    let (range, perms, offset, dev, inode) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
    let path = f.next().unwrap_or("").trim_start().to_string();
    let (start, end) = range.split_once('-')?;
    let (major, minor) = dev.split_once(':')?;
    let p = perms.as_bytes();
    Some(MapEntry {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        perms: [*p.first()?, *p.get(1)?, *p.get(2)?, *p.get(3)?],
        offset: u64::from_str_radix(offset, 16).ok()?,
        dev: (u32::from_str_radix(major, 16).ok()?, u32::from_str_radix(minor, 16).ok()?),
        inode: inode.parse().ok()?,
        path,
    })
    .filter(|m| m.start < m.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_as_the_kernel_writes_them() {
        let text = "00400000-0061d000 r-xp 00000000 fe:00 1311 /tmp/gomem\n\
                    7f7fc0000000-7f7fc0021000 rw-p 00000000 00:00 0 \n\
                    7ffd2d7e5000-7ffd2d7e7000 r-xp 00000000 00:00 0                          [vdso]\n\
                    garbage\n\
                    7f1-7f0 r--p 0 0:0 0\n";
        let m = maps(text);
        assert_eq!(m.len(), 3);
        assert_eq!((m[0].start, m[0].end, m[0].dev, m[0].inode, m[0].path.as_str()), (0x400000, 0x61d000, (0xfe, 0), 1311, "/tmp/gomem"));
        assert!(m[0].executable() && !m[1].executable());
        assert_eq!(m[1].path, "");
        assert_eq!(m[2].path, "[vdso]");
        assert!(m[0].contains(0x400000) && !m[0].contains(0x61d000));
    }
}

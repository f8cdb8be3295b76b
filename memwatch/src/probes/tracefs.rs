//! Finding tracefs (mounting it when absent) and reading event `format` files from it.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TracefsError {
    #[error("tracefs not found under {sysfs} and mounting it at {target} failed: {source}")]
    Mount { sysfs: PathBuf, target: PathBuf, source: io::Error },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
}

#[derive(Debug, Clone)]
pub struct Tracefs {
    pub root: PathBuf,
    /// True when memwatch mounted it (the host had no tracefs mounted).
    pub mounted_here: bool,
}

impl Tracefs {
    /// Uses `explicit` if given; else looks for tracefs under `sysfs` (`kernel/tracing`, then
    /// `kernel/debug/tracing`) and mounts it at `kernel/tracing` when neither is there.
    pub fn open(sysfs: &Path, explicit: Option<&Path>) -> Result<Self, TracefsError> {
        if let Some(root) = explicit {
            return Ok(Tracefs { root: root.to_path_buf(), mounted_here: false });
        }
        let candidates = [sysfs.join("kernel/tracing"), sysfs.join("kernel/debug/tracing")];
        if let Some(root) = candidates.iter().find(|c| c.join("events").is_dir()) {
            return Ok(Tracefs { root: root.clone(), mounted_here: false });
        }
        let target = candidates[0].clone();
        mount_tracefs(&target).map_err(|source| TracefsError::Mount { sysfs: sysfs.to_path_buf(), target: target.clone(), source })?;
        Ok(Tracefs { root: target, mounted_here: true })
    }

    pub fn format_path(&self, category: &str, event: &str) -> PathBuf {
        self.root.join("events").join(category).join(event).join("format")
    }

    pub fn read_format(&self, category: &str, event: &str) -> Result<String, TracefsError> {
        let path = self.format_path(category, event);
        fs::read_to_string(&path).map_err(|source| TracefsError::Read { path, source })
    }
}

fn mount_tracefs(target: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let target = CString::new(target.as_os_str().as_bytes())?;
    let fstype = c"tracefs";
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let rc = unsafe { libc::mount(fstype.as_ptr(), target.as_ptr(), fstype.as_ptr(), 0, std::ptr::null()) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

//! Finds (or mounts) tracefs and reads tracepoint format files, whose field
//! offsets are the tracepoint's ABI on the running kernel.

use std::{
    ffi::CString,
    fs, io,
    path::{Path, PathBuf},
};

use thiserror::Error;

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

#[derive(Debug, Error)]
pub enum TracefsError {
    #[error("tracefs is not mounted and mounting it on {path} failed")]
    Mount {
        path: String,
        #[source]
        io_error: io::Error,
    },
    #[error("reading tracepoint format {path}")]
    ReadFormat {
        path: String,
        #[source]
        io_error: io::Error,
    },
    #[error("tracepoint format {path} has no field `{field}`")]
    MissingField { path: String, field: String },
}

/// How tracefs was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TracefsState {
    AlreadyMounted(PathBuf),
    MountedByUs(PathBuf),
}

impl TracefsState {
    pub fn root(&self) -> &Path {
        match self {
            Self::AlreadyMounted(p) | Self::MountedByUs(p) => p,
        }
    }
}

/// Returns the tracefs root, mounting tracefs on /sys/kernel/tracing when no
/// candidate has it (some hosts do not mount it; classic tracepoints need it).
pub fn ensure_mounted() -> Result<TracefsState, TracefsError> {
    for c in CANDIDATES {
        if Path::new(c).join("events").is_dir() {
            return Ok(TracefsState::AlreadyMounted(PathBuf::from(c)));
        }
    }
    let target = CANDIDATES[0];
    mount_pseudo_fs("tracefs", target).map_err(|io_error| TracefsError::Mount {
        path: target.to_owned(),
        io_error,
    })?;
    Ok(TracefsState::MountedByUs(PathBuf::from(target)))
}

/// Mounts a kernel pseudo filesystem (`tracefs`, `securityfs`) on `target`,
/// nosuid, nodev, noexec.
pub fn mount_pseudo_fs(fstype: &str, target: &str) -> io::Result<()> {
    let src = CString::new(fstype).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let dst = CString::new(target).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            src.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Byte offset of `field` in the record of tracepoint `category/name`.
pub fn field_offset(
    root: &Path,
    category: &str,
    name: &str,
    field: &str,
) -> Result<u32, TracefsError> {
    let path = root.join("events").join(category).join(name).join("format");
    let text = fs::read_to_string(&path).map_err(|io_error| TracefsError::ReadFormat {
        path: path.display().to_string(),
        io_error,
    })?;
    parse_field_offset(&text, field).ok_or_else(|| TracefsError::MissingField {
        path: path.display().to_string(),
        field: field.to_owned(),
    })
}

/// Parses lines such as `\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;`.
pub fn parse_field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let mut parts = line.trim().split(';').map(str::trim);
        let decl = parts.next()?.strip_prefix("field:")?;
        // The name is the last word of the declaration, minus any array suffix.
        let name = decl.rsplit(' ').next()?;
        let name = name.split('[').next()?;
        if name != field {
            return None;
        }
        parts.find_map(|p| p.strip_prefix("offset:")?.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXEC_FORMAT: &str = "name: sched_process_exec
ID: 318
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;

print fmt: \"filename=%s pid=%d old_pid=%d\", __get_str(filename), REC->pid, REC->old_pid
";

    #[test]
    fn finds_fields_by_name() {
        assert_eq!(parse_field_offset(EXEC_FORMAT, "filename"), Some(8));
        assert_eq!(parse_field_offset(EXEC_FORMAT, "pid"), Some(12));
        assert_eq!(parse_field_offset(EXEC_FORMAT, "old_pid"), Some(16));
        assert_eq!(parse_field_offset(EXEC_FORMAT, "common_pid"), Some(4));
    }

    #[test]
    fn missing_field_is_none() {
        assert_eq!(parse_field_offset(EXEC_FORMAT, "nope"), None);
        assert_eq!(parse_field_offset("", "pid"), None);
    }

    #[test]
    fn array_fields_match_without_suffix() {
        let f = "\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;";
        assert_eq!(parse_field_offset(f, "comm"), Some(8));
    }
}

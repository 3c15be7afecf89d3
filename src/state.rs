//! Persisted runtime state in StateDir: JSON files written atomically (a
//! temporary file, fsync, rename, fsync of the directory), so that a crash
//! leaves either the old or the new file, never a torn one. A file that does
//! not parse is kept aside and the plugin starts from what is valid.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Writes `data` to `path` atomically and durably.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no parent directory"))?;
    let tmp = tmp_path(path);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Serializes `value` as pretty JSON and writes it atomically.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let mut data = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    data.push(b'\n');
    write_atomic(path, &data)
}

/// What loading a state file found.
#[derive(Debug, PartialEq)]
pub enum Loaded<T> {
    /// No file yet.
    Missing,
    Ok(T),
    /// The file did not parse; it was moved to the path given.
    Corrupt {
        error: String,
        kept_at: PathBuf,
    },
}

/// Reads a JSON state file; a file that does not parse is renamed to
/// `<name>.corrupt` (replacing an older one) so that it is kept for a human.
pub fn load_json<T: DeserializeOwned>(path: &Path) -> io::Result<Loaded<T>> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Missing),
        Err(e) => return Err(e),
    };
    match serde_json::from_slice(&data) {
        Ok(v) => Ok(Loaded::Ok(v)),
        Err(e) => {
            let mut name = path.file_name().unwrap_or_default().to_os_string();
            name.push(".corrupt");
            let kept_at = path.with_file_name(name);
            fs::rename(path, &kept_at)?;
            Ok(Loaded::Corrupt {
                error: e.to_string(),
                kept_at,
            })
        }
    }
}

/// A StateDir file holding named objects: `{"version": 1, "items": {...}}`.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MapFile<T> {
    version: u32,
    items: std::collections::BTreeMap<String, T>,
}

const MAP_VERSION: u32 = 1;

/// Reads a map file; a missing file is empty; a file that does not parse
/// (or of another version) is logged, kept aside and treated as empty.
pub fn load_map<T: DeserializeOwned>(path: &Path) -> std::collections::BTreeMap<String, T> {
    match load_json::<MapFile<T>>(path) {
        Ok(Loaded::Ok(f)) if f.version == MAP_VERSION => f.items,
        Ok(Loaded::Ok(f)) => {
            log::error!(
                "{}: unknown version {}; ignoring it",
                path.display(),
                f.version
            );
            Default::default()
        }
        Ok(Loaded::Missing) => Default::default(),
        Ok(Loaded::Corrupt { error, kept_at }) => {
            log::error!(
                "{} does not parse ({error}); kept it as {} and started without it",
                path.display(),
                kept_at.display()
            );
            Default::default()
        }
        Err(e) => {
            log::error!("cannot read {}: {e}; starting without it", path.display());
            Default::default()
        }
    }
}

/// Writes a map file atomically.
pub fn save_map<T: Serialize>(
    path: &Path,
    items: &std::collections::BTreeMap<String, T>,
) -> Result<(), String> {
    #[derive(Serialize)]
    struct Out<'a, T> {
        version: u32,
        items: &'a std::collections::BTreeMap<String, T>,
    }
    save_json(
        path,
        &Out {
            version: MAP_VERSION,
            items,
        },
    )
    .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "rest-state-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn round_trip_and_no_temp_left() {
        let d = dir();
        let p = d.join("state.json");
        assert_eq!(
            load_json::<BTreeMap<String, u32>>(&p).unwrap(),
            Loaded::Missing
        );
        let v: BTreeMap<String, u32> = [("a".into(), 1)].into();
        save_json(&p, &v).unwrap();
        assert_eq!(load_json(&p).unwrap(), Loaded::Ok(v.clone()));
        let v2: BTreeMap<String, u32> = [("b".into(), 2)].into();
        save_json(&p, &v2).unwrap();
        assert_eq!(load_json(&p).unwrap(), Loaded::Ok(v2));
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn corrupt_file_is_kept_aside() {
        let d = dir();
        let p = d.join("state.json");
        fs::write(&p, b"{\"a\": 1,").unwrap();
        match load_json::<BTreeMap<String, u32>>(&p).unwrap() {
            Loaded::Corrupt { kept_at, error } => {
                assert!(!error.is_empty());
                assert_eq!(fs::read(&kept_at).unwrap(), b"{\"a\": 1,");
            }
            other => panic!("{other:?}"),
        }
        assert!(!p.exists());
        fs::remove_dir_all(d).unwrap();
    }
}

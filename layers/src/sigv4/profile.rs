//! Credentials from the shared config and credentials files (`~/.aws/credentials`,
//! `~/.aws/config`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::credentials::{Credentials, CredentialsFuture, ProvideCredentials};
use super::error::{CredentialsError, CredentialsErrorKind};
use super::Env;

/// Reads static keys of a profile from the shared files.
///
/// [`provide_credentials`](ProvideCredentials::provide_credentials) reads them on the
/// Tokio runtime's blocking pool (`spawn_blocking`), never on a runtime thread;
/// [`load`](Self::load) reads them on the calling thread.
///
/// - Profile: the one given, else `AWS_PROFILE`, else `default`.
/// - Files: `AWS_SHARED_CREDENTIALS_FILE` (default `~/.aws/credentials`) and
///   `AWS_CONFIG_FILE` (default `~/.aws/config`, where sections are `[profile name]`,
///   except `[default]`). A key in the credentials file wins over the config file.
/// - Keys: `aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`.
///
/// Profiles that assume roles (`role_arn`, `source_profile`), use SSO or run a
/// `credential_process` are reported as unsupported: plug aws-config's provider through
/// [`AwsSdkProvider`](super::AwsSdkProvider) for those.
///
/// The files are read on every call; wrap the provider in a
/// [`CredentialsCache`](super::CredentialsCache) (the default chain does).
///
/// ```
/// use invoke_layers::sigv4::ProfileProvider;
/// let dir = std::env::temp_dir().join(format!("doc-profile-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let creds = dir.join("credentials");
/// std::fs::write(&creds, "[work]\naws_access_key_id = AKIDWORK\naws_secret_access_key = s3cr3t\n")?;
/// let provider = ProfileProvider::new()
///     .profile("work")
///     .credentials_file(&creds)
///     .config_file(dir.join("missing-config"));
/// assert_eq!(provider.load()?.access_key_id(), "AKIDWORK");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProfileProvider {
    profile: Option<String>,
    credentials_file: Option<PathBuf>,
    config_file: Option<PathBuf>,
    env: Env,
}

type Section = HashMap<String, String>;

/// Parses an AWS shared file: `[section]` headers, `key = value` lines, `#`/`;`
/// comments; sub-properties (indented lines) are ignored.
fn parse(text: &str, config_style: bool) -> HashMap<String, Section> {
    let mut out: HashMap<String, Section> = HashMap::new();
    let mut current: Option<String> = None;
    for raw in text.lines() {
        let indented = raw.starts_with([' ', '\t']);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let header = header.trim();
            let name = if config_style {
                match header.strip_prefix("profile ") {
                    Some(n) => Some(n.trim().to_owned()),
                    None if header == "default" => Some("default".to_owned()),
                    // `[sso-session x]`, `[services x]`: not profiles.
                    None => None,
                }
            } else {
                Some(header.to_owned())
            };
            current = name;
            if let Some(n) = &current {
                out.entry(n.clone()).or_default();
            }
            continue;
        }
        if indented {
            continue;
        }
        if let (Some(section), Some((k, v))) = (&current, line.split_once('=')) {
            let v = v.trim();
            // Inline comments need whitespace before the marker.
            let v = v
                .split_once(" #")
                .or_else(|| v.split_once(" ;"))
                .map_or(v, |(head, _)| head.trim_end());
            out.entry(section.clone())
                .or_default()
                .insert(k.trim().to_ascii_lowercase(), v.to_owned());
        }
    }
    out
}

fn home(env: &Env) -> Option<PathBuf> {
    env.non_empty("HOME")
        .or_else(|| env.non_empty("USERPROFILE"))
        .map(PathBuf::from)
}

fn expand(env: &Env, path: &str) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => home(env).map_or_else(|| PathBuf::from(path), |h| h.join(rest)),
        None => PathBuf::from(path),
    }
}

impl ProfileProvider {
    /// Name used in errors.
    pub const SOURCE: &'static str = "profile files";

    /// A provider using the environment's choice of profile and files.
    pub fn new() -> Self {
        Self::default()
    }
    /// Uses this profile instead of `AWS_PROFILE` / `default`.
    pub fn profile(mut self, name: impl Into<String>) -> Self {
        self.profile = Some(name.into());
        self
    }
    /// Uses this credentials file.
    pub fn credentials_file(mut self, path: impl AsRef<Path>) -> Self {
        self.credentials_file = Some(path.as_ref().to_owned());
        self
    }
    /// Uses this config file.
    pub fn config_file(mut self, path: impl AsRef<Path>) -> Self {
        self.config_file = Some(path.as_ref().to_owned());
        self
    }
    /// Reads `AWS_PROFILE`, `AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE` and `HOME`
    /// from `env` instead of the process environment.
    pub fn env(mut self, env: Env) -> Self {
        self.env = env;
        self
    }

    /// The profile used: the one given, else `AWS_PROFILE`, else `default`.
    pub fn profile_name(&self) -> String {
        self.profile
            .clone()
            .or_else(|| self.env.non_empty("AWS_PROFILE"))
            .unwrap_or_else(|| "default".to_owned())
    }

    /// The config file used: the one given, else `AWS_CONFIG_FILE`, else `~/.aws/config`.
    pub fn config_path(&self) -> PathBuf {
        self.file(
            self.config_file.as_ref(),
            "AWS_CONFIG_FILE",
            "~/.aws/config",
        )
    }

    fn file(&self, explicit: Option<&PathBuf>, var: &str, default: &str) -> PathBuf {
        explicit.cloned().unwrap_or_else(|| {
            self.env
                .non_empty(var)
                .map_or_else(|| expand(&self.env, default), |v| expand(&self.env, &v))
        })
    }

    /// The settings of the profile in the config file (`region`, `endpoint_url`,
    /// `max_attempts`, ...), keys in lower case; empty when the file or the profile does
    /// not exist. Reads the file now, on this thread (blocking).
    ///
    /// ```
    /// use invoke_layers::sigv4::ProfileProvider;
    /// let path = std::env::temp_dir().join(format!("doc-config-{}", std::process::id()));
    /// std::fs::write(&path, "[profile work]\nregion = eu-west-1\n")?;
    /// let values = ProfileProvider::new().profile("work").config_file(&path).config_values()?;
    /// assert_eq!(values.get("region").map(String::as_str), Some("eu-west-1"));
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn config_values(&self) -> Result<HashMap<String, String>, CredentialsError> {
        let profile = self.profile_name();
        Ok(Self::read(&self.config_path())?
            .map(|t| parse(&t, true))
            .and_then(|mut m| m.remove(&profile))
            .unwrap_or_default())
    }

    fn read(path: &Path) -> Result<Option<String>, CredentialsError> {
        match std::fs::read_to_string(path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(CredentialsError::new(
                Self::SOURCE,
                CredentialsErrorKind::ProviderError,
                format!("cannot read {}: {e}", path.display()),
            )),
        }
    }

    /// Reads the files now, on this thread (blocking).
    pub fn load(&self) -> Result<Credentials, CredentialsError> {
        let profile = self.profile_name();
        let creds_path = self.file(
            self.credentials_file.as_ref(),
            "AWS_SHARED_CREDENTIALS_FILE",
            "~/.aws/credentials",
        );
        let config_path = self.config_path();
        let creds_text = Self::read(&creds_path)?;
        let config_text = Self::read(&config_path)?;
        if creds_text.is_none() && config_text.is_none() {
            return Err(CredentialsError::new(
                Self::SOURCE,
                CredentialsErrorKind::NotLoaded,
                format!(
                    "neither {} nor {} exists",
                    creds_path.display(),
                    config_path.display()
                ),
            ));
        }
        let mut section = config_text
            .map(|t| parse(&t, true))
            .and_then(|mut m| m.remove(&profile));
        if let Some(from_creds) = creds_text
            .map(|t| parse(&t, false))
            .and_then(|mut m| m.remove(&profile))
        {
            section.get_or_insert_with(Section::new).extend(from_creds);
        }
        let Some(section) = section else {
            return Err(CredentialsError::new(
                Self::SOURCE,
                CredentialsErrorKind::NotLoaded,
                format!("profile {profile:?} not found"),
            ));
        };
        let get = |k: &str| section.get(k).filter(|v| !v.is_empty()).cloned();
        match (get("aws_access_key_id"), get("aws_secret_access_key")) {
            (Some(key), Some(secret)) => Ok(Credentials::new(
                key,
                secret,
                get("aws_session_token"),
                None,
                "profile",
            )),
            (None, None) => {
                let unsupported = [
                    "role_arn",
                    "source_profile",
                    "sso_session",
                    "sso_start_url",
                    "credential_process",
                    "web_identity_token_file",
                ]
                .into_iter()
                .find(|k| section.contains_key(*k));
                let message = match unsupported {
                    Some(k) => format!(
                        "profile {profile:?} uses {k}, which this provider does not support; use aws-config through AwsSdkProvider"
                    ),
                    None => format!("profile {profile:?} has no aws_access_key_id"),
                };
                Err(CredentialsError::new(
                    Self::SOURCE,
                    if unsupported.is_some() {
                        CredentialsErrorKind::InvalidConfiguration
                    } else {
                        CredentialsErrorKind::NotLoaded
                    },
                    message,
                ))
            }
            (Some(_), None) => Err(CredentialsError::new(
                Self::SOURCE,
                CredentialsErrorKind::InvalidConfiguration,
                format!("profile {profile:?} has aws_access_key_id but no aws_secret_access_key"),
            )),
            (None, Some(_)) => Err(CredentialsError::new(
                Self::SOURCE,
                CredentialsErrorKind::InvalidConfiguration,
                format!("profile {profile:?} has aws_secret_access_key but no aws_access_key_id"),
            )),
        }
    }
}

impl ProvideCredentials for ProfileProvider {
    /// Reads the files on the Tokio runtime's blocking pool (file I/O blocks, and a
    /// runtime thread must not); outside a runtime, reads them at once.
    fn provide_credentials(&self) -> CredentialsFuture {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return CredentialsFuture::ready(self.load());
        };
        let provider = self.clone();
        let read = runtime.spawn_blocking(move || provider.load());
        CredentialsFuture::new(async move {
            read.await.unwrap_or_else(|e| {
                Err(CredentialsError::new(
                    Self::SOURCE,
                    CredentialsErrorKind::ProviderError,
                    if e.is_cancelled() {
                        "the read of the files was cancelled (runtime shutting down)"
                    } else {
                        "the read of the files panicked"
                    },
                ))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        dir: PathBuf,
    }

    impl Files {
        fn new(tag: &str, credentials: Option<&str>, config: Option<&str>) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "invoke-layers-profile-{tag}-{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            if let Some(c) = credentials {
                std::fs::write(dir.join("credentials"), c).unwrap();
            }
            if let Some(c) = config {
                std::fs::write(dir.join("config"), c).unwrap();
            }
            Self { dir }
        }
        fn provider(&self, profile: &str) -> ProfileProvider {
            ProfileProvider::new()
                .profile(profile)
                .credentials_file(self.dir.join("credentials"))
                .config_file(self.dir.join("config"))
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    const CREDENTIALS: &str = "\
# comment
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key = secret-default ; trailing comment

[dev]
aws_access_key_id=AKIDDEV
aws_secret_access_key=secret-dev
aws_session_token = token-dev
";
    const CONFIG: &str = "\
[default]
region = us-east-1
[profile dev]
aws_access_key_id = AKIDFROMCONFIG
[profile only-config]
aws_access_key_id = AKIDCONFIG
aws_secret_access_key = secret-config
s3 =
  max_concurrent_requests = 10
[profile role]
role_arn = arn:aws:iam::123456789012:role/r
source_profile = default
[sso-session corp]
sso_start_url = https://example.com
";

    #[test]
    fn default_and_named_profiles() {
        let f = Files::new("named", Some(CREDENTIALS), Some(CONFIG));
        let c = f.provider("default").load().unwrap();
        assert_eq!(
            (c.access_key_id(), c.secret_access_key()),
            ("AKIDDEFAULT", "secret-default")
        );
        // The credentials file wins over the config file.
        let c = f.provider("dev").load().unwrap();
        assert_eq!(
            (c.access_key_id(), c.session_token()),
            ("AKIDDEV", Some("token-dev"))
        );
        let c = f.provider("only-config").load().unwrap();
        assert_eq!(c.access_key_id(), "AKIDCONFIG");
    }

    /// The files are read off the runtime's thread. The credentials file is a FIFO:
    /// opening it blocks until a writer opens it, and the writer is a task of the same
    /// current-thread runtime. Read on the runtime's thread, the open blocks that thread
    /// and the writer never runs; read on the blocking pool, the writer runs and the read
    /// completes. A watchdog thread breaks the deadlock (after 10 s) by writing other
    /// keys, so the test fails instead of hanging.
    #[cfg(unix)]
    #[test]
    fn files_are_read_off_the_runtime_thread() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        use std::time::{Duration, Instant};

        let dir =
            std::env::temp_dir().join(format!("invoke-layers-profile-fifo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("credentials");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let provider = ProfileProvider::new()
            .profile("default")
            .credentials_file(&fifo)
            .config_file(dir.join("config"));

        let done = Arc::new(AtomicBool::new(false));
        let watchdog = std::thread::spawn({
            let (done, fifo) = (Arc::clone(&done), fifo.clone());
            move || {
                let start = Instant::now();
                while !done.load(Ordering::SeqCst) {
                    if start.elapsed() > Duration::from_secs(10) {
                        let _ = std::fs::write(
                            &fifo,
                            "[default]\naws_access_key_id = AKIDWATCHDOG\naws_secret_access_key = s\n",
                        );
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let result = runtime.block_on(async {
            let fifo = fifo.clone();
            tokio::spawn(async move {
                tokio::task::spawn_blocking(move || {
                    std::fs::write(
                        &fifo,
                        "[default]\naws_access_key_id = AKIDFROMTASK\naws_secret_access_key = s\n",
                    )
                })
                .await
            });
            provider.provide_credentials().await
        });
        done.store(true, Ordering::SeqCst);
        // Without waiting for a writer stuck on the FIFO (before the fix).
        runtime.shutdown_background();
        watchdog.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(result.unwrap().access_key_id(), "AKIDFROMTASK");
    }

    #[test]
    fn clear_errors() {
        let f = Files::new("errors", Some(CREDENTIALS), Some(CONFIG));
        let e = f.provider("nope").load().unwrap_err();
        assert_eq!(e.kind(), CredentialsErrorKind::NotLoaded);
        assert!(e.to_string().contains("\"nope\" not found"), "{e}");
        let e = f.provider("role").load().unwrap_err();
        assert_eq!(e.kind(), CredentialsErrorKind::InvalidConfiguration);
        assert!(e.to_string().contains("role_arn"), "{e}");
        // `[sso-session corp]` is not a profile.
        assert_eq!(
            f.provider("sso-session corp").load().unwrap_err().kind(),
            CredentialsErrorKind::NotLoaded
        );
        let none = Files::new("none", None, None);
        let e = none.provider("default").load().unwrap_err();
        assert_eq!(e.kind(), CredentialsErrorKind::NotLoaded);
        assert_eq!(e.source_name(), "profile files");
    }
}

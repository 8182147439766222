//! Large bodies: [`download`](SafeguardClient::download) into a file and
//! [`upload`](SafeguardClient::upload) from a file or a stream, never held
//! whole in memory.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use reqwest::Method;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};

use super::{ApiResponse, SafeguardClient, Service};

/// How many downloaded bytes [`SafeguardClient::download`] gathers per
/// write to the file.
const DOWNLOAD_WRITE_BUFFER: usize = 1 << 20;

impl SafeguardClient {
    /// Streams a `GET` answer into a file without holding it in memory;
    /// returns the bytes written. `progress(written, total)` is called as
    /// chunks arrive.
    ///
    /// When `to` is a file or does not exist yet, the answer goes to a
    /// temporary file beside it (`.name.partial-…`), which replaces it once
    /// the whole answer is on disk, keeping an existing file's permissions;
    /// a download that fails or is dropped midway removes the temporary file
    /// and leaves `to` as it was. A symbolic link is followed (the link
    /// stays, its file is replaced). Anything else that already exists (a
    /// device such as `/dev/null`, a named pipe) is written directly.
    pub async fn download(
        &self,
        service: Service,
        path: &str,
        to: impl AsRef<Path>,
        mut progress: Option<&mut (dyn FnMut(u64, Option<u64>) + Send)>,
    ) -> Result<u64> {
        let response = self
            .get(service, path)
            .header_str("Accept", "application/octet-stream")
            .send()
            .await?;
        let total = response.content_length();
        let (file, partial) = match Destination::of(to.as_ref()).await? {
            Destination::Stream(path) => {
                let file = tokio::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .await?;
                (file, None)
            }
            Destination::File { target, mode } => {
                let partial = Partial::beside(&target)?;
                let file = tokio::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&partial.path)
                    .await?;
                if let Some(mode) = mode {
                    file.set_permissions(mode).await?;
                }
                (file, Some((partial, target)))
            }
        };
        // Chunks arrive as TLS records do (16 KiB or less), and every write
        // to a tokio `File` is a trip to the blocking pool: gather them into
        // writes of `DOWNLOAD_WRITE_BUFFER` bytes.
        let mut file = tokio::io::BufWriter::with_capacity(DOWNLOAD_WRITE_BUFFER, file);
        let mut written = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            file.write_all(&chunk).await?;
            written += chunk.len() as u64;
            if let Some(p) = progress.as_deref_mut() {
                p(written, total);
            }
        }
        file.flush().await?;
        let file = file.into_inner();
        if let Some((partial, target)) = partial {
            file.sync_all().await?;
            drop(file);
            partial.replace(&target).await?;
        }
        Ok(written)
    }

    /// Streams a file or a byte stream as the body of a `POST` (or the
    /// method given), never holding it whole; `progress(sent, total)` is
    /// called as the connection takes the chunks (see [`UploadProgress`]).
    pub async fn upload(
        &self,
        method: Method,
        service: Service,
        path: &str,
        source: UploadSource,
        content_type: &str,
        progress: Option<UploadProgress>,
    ) -> Result<ApiResponse> {
        let (stream, total) = source.into_stream().await?;
        let sent = Arc::new(Mutex::new(Sent {
            handed: 0,
            pending: 0,
            total,
            progress,
        }));
        let counted = Counted {
            source: stream,
            sent: sent.clone(),
        };
        let mut builder = self
            .request(method, service, path)
            .header_str("Content-Type", content_type)
            .raw_body(reqwest::Body::wrap_stream(counted));
        if let Some(t) = total {
            builder = builder.header_str("Content-Length", &t.to_string());
        }
        let response = builder.send_raw().await?;
        // An answer: the request is complete, its last chunk taken.
        Sent::lock(&sent).taken();
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(response.into_error().await)
        }
    }
}

/// Where a download's bytes go.
enum Destination {
    /// A regular file (or none yet): written beside `target`, renamed over
    /// it when whole; `mode` is the permissions of the file it replaces.
    File {
        target: PathBuf,
        mode: Option<std::fs::Permissions>,
    },
    /// Something that exists and is not a regular file (a device, a named
    /// pipe): written in place, since renaming over it would replace it
    /// (a file renamed over `/dev/null` breaks every program on the host
    /// that reads or writes it).
    Stream(PathBuf),
}

impl Destination {
    /// Looks at `to`, following symbolic links.
    async fn of(to: &Path) -> Result<Self> {
        match tokio::fs::metadata(to).await {
            Ok(meta) if meta.is_file() => Ok(Destination::File {
                // The link's file is replaced, not the link.
                target: tokio::fs::canonicalize(to).await?,
                mode: Some(meta.permissions()),
            }),
            Ok(meta) if meta.is_dir() => Err(Error::Config(format!(
                "{} is a directory, not a file to download into",
                to.display()
            ))),
            Ok(_) => Ok(Destination::Stream(to.to_path_buf())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Destination::File {
                target: to.to_path_buf(),
                mode: None,
            }),
            Err(e) => Err(e.into()),
        }
    }
}

/// A download's temporary file, beside its target: renamed over the target
/// once whole, removed otherwise (also when the download is dropped).
struct Partial {
    path: PathBuf,
    replaced: bool,
}

impl Partial {
    /// `.name.partial-<random>` in the directory of `target`.
    fn beside(target: &Path) -> Result<Self> {
        let name = target
            .file_name()
            .ok_or_else(|| Error::Config(format!("{} does not name a file", target.display())))?;
        let mut partial = OsString::from(".");
        partial.push(name);
        partial.push(format!(".partial-{}", crate::auth::rsts::random_token(6)));
        let path = match target.parent() {
            Some(dir) => dir.join(partial),
            None => PathBuf::from(partial),
        };
        Ok(Self {
            path,
            replaced: false,
        })
    }

    /// Renames the (flushed and synced) file over `target`.
    async fn replace(mut self, target: &Path) -> Result<()> {
        tokio::fs::rename(&self.path, target).await?;
        self.replaced = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.replaced {
            // Synchronous, so that it also happens when the download's
            // future is dropped; removing one file does not block for long.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Called as an upload's chunks are handed to the connection, with the bytes
/// handed so far and the total when known. A chunk counts once the HTTP
/// stack has taken the next one (it takes more only when it has room for
/// more) or the request has completed: bytes read from the source but
/// stuck before a server that stopped reading are not counted.
pub type UploadProgress = Box<dyn FnMut(u64, Option<u64>) + Send + Sync>;

/// An upload's count of bytes handed to the connection.
struct Sent {
    /// Bytes reported as handed to the connection.
    handed: u64,
    /// The chunk the HTTP stack took last, not counted yet.
    pending: u64,
    total: Option<u64>,
    progress: Option<UploadProgress>,
}

impl Sent {
    /// The count, locked (held to update and report it; a poisoned count
    /// is still a count).
    fn lock(sent: &Mutex<Sent>) -> MutexGuard<'_, Sent> {
        sent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The HTTP stack took the next chunk, or the request completed: the
    /// pending chunk is on the connection.
    fn taken(&mut self) {
        if self.pending == 0 {
            return;
        }
        self.handed += std::mem::take(&mut self.pending);
        let (handed, total) = (self.handed, self.total);
        if let Some(p) = self.progress.as_mut() {
            p(handed, total);
        }
    }
}

/// An upload's source, counting its chunks into [`Sent`] as the HTTP stack
/// takes them.
struct Counted {
    source: BoxStream<'static, std::io::Result<Bytes>>,
    sent: Arc<Mutex<Sent>>,
}

impl Stream for Counted {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = ready!(self.source.poll_next_unpin(cx));
        let mut sent = Sent::lock(&self.sent);
        match &next {
            Some(Ok(chunk)) => {
                sent.taken();
                sent.pending = chunk.len() as u64;
            }
            None => sent.taken(),
            Some(Err(_)) => {}
        }
        Poll::Ready(next)
    }
}

/// Where an upload's bytes come from.
pub enum UploadSource {
    /// A file, read in chunks.
    File(std::path::PathBuf),
    /// A stream of chunks, with its total length when known.
    Stream(BoxStream<'static, std::io::Result<Bytes>>, Option<u64>),
}

impl fmt::Debug for UploadSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UploadSource::File(p) => f.debug_tuple("File").field(p).finish(),
            UploadSource::Stream(_, len) => f.debug_tuple("Stream").field(len).finish(),
        }
    }
}

impl UploadSource {
    async fn into_stream(
        self,
    ) -> Result<(BoxStream<'static, std::io::Result<Bytes>>, Option<u64>)> {
        match self {
            UploadSource::File(path) => {
                let file = tokio::fs::File::open(&path).await?;
                let len = file.metadata().await?.len();
                let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024);
                Ok((stream.boxed(), Some(len)))
            }
            UploadSource::Stream(s, len) => Ok((s, len)),
        }
    }
}

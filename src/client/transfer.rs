//! Large bodies: [`download`](SafeguardClient::download) into a file and
//! [`upload`](SafeguardClient::upload) from a file or a stream, never held
//! whole in memory.

use std::fmt;
use std::path::Path;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::Method;
use tokio::io::AsyncWriteExt;

use crate::error::Result;

use super::{ApiResponse, SafeguardClient, Service};

/// How many downloaded bytes [`SafeguardClient::download`] gathers per
/// write to the file.
const DOWNLOAD_WRITE_BUFFER: usize = 1 << 20;

impl SafeguardClient {
    /// Streams a `GET` answer into a file without holding it in memory;
    /// returns the bytes written. `progress(written, total)` is called as
    /// chunks arrive.
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
        // Chunks arrive as TLS records do (16 KiB or less), and every write
        // to a tokio `File` is a trip to the blocking pool: gather them into
        // writes of `DOWNLOAD_WRITE_BUFFER` bytes.
        let mut file = tokio::io::BufWriter::with_capacity(
            DOWNLOAD_WRITE_BUFFER,
            tokio::fs::File::create(to.as_ref()).await?,
        );
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
        Ok(written)
    }

    /// Streams a file or a byte stream as the body of a `POST` (or the
    /// method given), never holding it whole; `progress(sent, total)` is
    /// called as chunks go out.
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
        let mut sent = 0u64;
        let mut progress = progress;
        let counted = stream.map(move |chunk| {
            if let Ok(c) = &chunk {
                sent += c.len() as u64;
                if let Some(p) = progress.as_mut() {
                    p(sent, total);
                }
            }
            chunk
        });
        let mut builder = self
            .request(method, service, path)
            .header_str("Content-Type", content_type)
            .raw_body(reqwest::Body::wrap_stream(counted));
        if let Some(t) = total {
            builder = builder.header_str("Content-Length", &t.to_string());
        }
        builder.send().await
    }
}

/// Called as an upload's chunks go out, with the bytes sent so far and the
/// total when known.
pub type UploadProgress = Box<dyn FnMut(u64, Option<u64>) + Send + Sync>;

/// Where an upload's bytes come from.
pub enum UploadSource {
    /// A file, read in chunks.
    File(std::path::PathBuf),
    /// A stream of chunks, with its total length when known.
    Stream(
        futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
        Option<u64>,
    ),
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
    ) -> Result<(
        futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
        Option<u64>,
    )> {
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

//! Sending one call through the SDK's generic verbs and printing its answer:
//! what the generated commands and `safeguard api` share.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use http::Method;
use safeguard_sdk::{SafeguardClient, Service, UploadSource};
use serde_json::Value;

use crate::exit::{usage, CliError, CliResult};
use crate::output::{self, Format};

/// What a call sends as its body.
#[derive(Clone, Debug)]
pub enum Payload {
    /// No body.
    None,
    /// A JSON document.
    Json(Value),
    /// Raw bytes from a file (`-`: stdin) with this content type.
    Raw(PathBuf, String),
    /// `multipart/form-data` with the file in one field.
    Multipart(PathBuf, String),
}

/// One call to send.
#[derive(Clone, Debug)]
pub struct Call {
    /// The HTTP method.
    pub method: Method,
    /// The service.
    pub service: Service,
    /// The path below the service's v4 base, without query.
    pub path: String,
    /// Query parameters.
    pub query: Vec<(String, String)>,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub payload: Payload,
    /// Walk every page (`page`/`limit`) of a GET listing.
    pub all: bool,
    /// Items per page when walking pages.
    pub page_size: u32,
    /// The answer is bytes: save it to `out` (or stdout).
    pub binary: bool,
    /// Where bytes go (`None` or `-`: stdout).
    pub out: Option<PathBuf>,
    /// Print the body as received instead of formatting it.
    pub raw: bool,
}

/// Service names as the CLI spells them.
pub fn service(name: &str) -> Option<Service> {
    Some(match name.to_ascii_lowercase().as_str() {
        "core" => Service::Core,
        "appliance" => Service::Appliance,
        "notification" => Service::Notification,
        "a2a" => Service::A2a,
        "management" => Service::Management,
        _ => return None,
    })
}

/// Percent-encodes a path segment (everything but RFC 3986 unreserved).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads a JSON body from `FILE` or `-` (stdin). With `string_ok`, text
/// that is not JSON becomes a JSON string (trailing newline removed).
pub fn read_json_body(source: &Path, string_ok: bool) -> CliResult<Value> {
    let mut text = String::new();
    if source == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| usage(format!("stdin: {e}")))?;
    } else {
        text = std::fs::read_to_string(source)
            .map_err(|e| usage(format!("{}: {e}", source.display())))?;
    }
    match serde_json::from_str(&text) {
        Ok(v) => Ok(v),
        Err(_) if string_ok => Ok(Value::String(
            text.trim_end_matches(['\r', '\n']).to_owned(),
        )),
        Err(e) => Err(usage(format!("the body is not JSON: {e}"))),
    }
}

/// A progress bar on stderr when it is a terminal.
pub fn progress_bar(total: Option<u64>) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bytes}/{total_bytes} {wide_bar} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

/// `path?query` (the SDK's upload and download take no query of their own;
/// the URL it builds keeps one given in the path).
fn with_query(path: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        return path.to_owned();
    }
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    format!("{path}?{q}")
}

/// A chunked stream of a file or stdin, with its length when known.
async fn source_stream(
    path: &Path,
) -> CliResult<(
    futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
    Option<u64>,
)> {
    let (reader, len): (Box<dyn tokio::io::AsyncRead + Send + Unpin>, Option<u64>) =
        if path == Path::new("-") {
            (Box::new(tokio::io::stdin()), None)
        } else {
            let f = tokio::fs::File::open(path)
                .await
                .map_err(|e| usage(format!("{}: {e}", path.display())))?;
            let len = f.metadata().await.ok().map(|m| m.len());
            (Box::new(f), len)
        };
    Ok((tokio_util::io::ReaderStream::new(reader).boxed(), len))
}

/// Sends `call` and prints its answer.
pub async fn execute(client: &SafeguardClient, call: Call, format: Format) -> CliResult<()> {
    if call.all {
        let query: Vec<(String, String)> = call
            .query
            .into_iter()
            .filter(|(k, _)| k != "page" && k != "limit")
            .collect();
        let items: Vec<Value> = client
            .paginate::<Value>(call.service, &call.path, call.page_size, query)
            .try_collect()
            .await?;
        output::print(&Value::Array(items), format).map_err(io_error)?;
        return Ok(());
    }
    let target = with_query(&call.path, &call.query);
    let response = match call.payload {
        Payload::Raw(source, content_type) => {
            let (stream, len) = source_stream(&source).await?;
            upload(
                client,
                call.method,
                call.service,
                &target,
                stream,
                len,
                &content_type,
            )
            .await?
        }
        Payload::Multipart(source, field) => {
            let (stream, len) = source_stream(&source).await?;
            let boundary = format!("safeguard-cli-{:016x}", rand_u64());
            let file_name = source
                .file_name()
                .map(|f| f.to_string_lossy().replace('"', ""))
                .unwrap_or_else(|| "upload".into());
            let head = Bytes::from(format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ));
            let tail = Bytes::from(format!("\r\n--{boundary}--\r\n"));
            let total = len.map(|l| l + head.len() as u64 + tail.len() as u64);
            let body = futures::stream::once(async move { Ok(head) })
                .chain(stream)
                .chain(futures::stream::once(async move { Ok(tail) }))
                .boxed();
            let ct = format!("multipart/form-data; boundary={boundary}");
            upload(client, call.method, call.service, &target, body, total, &ct).await?
        }
        payload => {
            if call.binary && call.method == Method::GET && call.headers.is_empty() {
                if let Some(out) = call.out.as_ref().filter(|o| o.as_os_str() != "-") {
                    return download(client, call.service, &target, out).await;
                }
            }
            let mut request = client
                .request(call.method, call.service, &call.path)
                .query(&call.query)?;
            for (name, value) in &call.headers {
                request = request.header_str(name, value);
            }
            if call.binary {
                request = request.header_str("Accept", "application/octet-stream");
            }
            if let Payload::Json(body) = &payload {
                request = request.json(body);
            }
            request.send().await?
        }
    };
    if call.binary {
        let mut stdout = std::io::stdout().lock();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            stdout.write_all(&chunk?).map_err(io_error)?;
        }
        return stdout.flush().map_err(io_error);
    }
    let body = response.bytes().await?;
    print_body(&body, call.raw, format)
}

/// Prints an answer's body: as received with `raw`, else JSON in `format`
/// (text that is not JSON as it is; nothing for an empty body).
pub fn print_body(body: &[u8], raw: bool, format: Format) -> CliResult<()> {
    let mut stdout = std::io::stdout().lock();
    if raw {
        stdout.write_all(body).map_err(io_error)?;
        return stdout.flush().map_err(io_error);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            drop(stdout);
            output::print(&v, format).map_err(io_error)
        }
        Err(_) => {
            stdout.write_all(body).map_err(io_error)?;
            if !body.ends_with(b"\n") {
                stdout.write_all(b"\n").map_err(io_error)?;
            }
            stdout.flush().map_err(io_error)
        }
    }
}

async fn upload(
    client: &SafeguardClient,
    method: Method,
    service: Service,
    target: &str,
    stream: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
    len: Option<u64>,
    content_type: &str,
) -> CliResult<safeguard_sdk::ApiResponse> {
    let bar = progress_bar(len);
    let progress: Option<safeguard_sdk::UploadProgress> = bar.clone().map(|b| {
        Box::new(move |sent: u64, _total: Option<u64>| b.set_position(sent))
            as safeguard_sdk::UploadProgress
    });
    let r = client
        .upload(
            method,
            service,
            target,
            UploadSource::Stream(stream, len),
            content_type,
            progress,
        )
        .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(r?)
}

/// Downloads `target` into the file `out` (whole or not at all), with a
/// progress bar on a terminal; says how many bytes on stderr.
pub async fn download(
    client: &SafeguardClient,
    service: Service,
    target: &str,
    out: &Path,
) -> CliResult<()> {
    let mut bar: Option<indicatif::ProgressBar> = None;
    let terminal = std::io::stderr().is_terminal();
    let mut progress = |done: u64, total: Option<u64>| {
        if !terminal {
            return;
        }
        let b = bar.get_or_insert_with(|| {
            progress_bar(total).unwrap_or_else(indicatif::ProgressBar::hidden)
        });
        b.set_position(done);
    };
    let written = client
        .download(service, target, out, Some(&mut progress))
        .await;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let written = written?;
    eprintln!("wrote {written} bytes to {}", out.display());
    Ok(())
}

/// A stdout failure as a CLI error (a closed pipe ends the command quietly).
pub fn io_error(e: std::io::Error) -> CliError {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        return CliError::BrokenPipe;
    }
    CliError::Other(format!("stdout: {e}"))
}

/// Writes `bytes` to stdout.
pub fn write_stdout(bytes: &[u8]) -> CliResult<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).map_err(io_error)?;
    out.flush().map_err(io_error)
}

/// A multipart boundary's randomness (not a secret).
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_queries_are_encoded() {
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(
            with_query("Users", &[("filter".into(), "Name eq 'a&b'".into())]),
            "Users?filter=Name+eq+%27a%26b%27"
        );
        assert_eq!(service("Core"), Some(Service::Core));
        assert_eq!(service("x"), None);
    }
}

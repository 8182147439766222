//! `/service/appliance/v4/...`, `/service/notification/v4/...` and the
//! OpenAPI documents.

use std::io::Write;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::{header, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::*;
use crate::state::{backup_chunk, backup_json, now_string, Backup, Upload};

pub(crate) async fn handle(ctx: &mut Ctx) -> Response {
    let (_, lower) = rest(ctx, 3);
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    let m = ctx.method().clone();
    match (m, l.as_slice()) {
        (Method::GET, ["systemtime"]) => {
            if ctx.header("authorization").is_some() {
                if let Err(r) = ctx.user() {
                    return r;
                }
            }
            ok(&json!({"CurrentTime": now_string()}))
        }
        (_, ["systemtime"]) => bad_method(ctx),
        (Method::GET, ["backups"]) => match ctx.user() {
            Ok(_) => {
                let items: Vec<Value> = ctx
                    .app
                    .db()
                    .backups
                    .values()
                    .map(|b| b.meta.clone())
                    .collect();
                list(ctx, items)
            }
            Err(r) => r,
        },
        (Method::POST, ["backups"]) => {
            let by = match ctx.admin(&["ApplianceAdmin"]) {
                Ok(i) => i,
                Err(r) => return r,
            };
            let id = uuid::Uuid::new_v4().to_string();
            let size = ctx
                .app
                .db()
                .backups
                .values()
                .next()
                .map(|b| b.size)
                .unwrap_or(1024 * 1024);
            let meta = backup_json(&id, size, "Complete", by);
            ctx.app.db().backups.insert(
                id.clone(),
                Backup {
                    meta: meta.clone(),
                    size,
                    seed: rand::random(),
                },
            );
            ctx.app
                .emit("BackupCompleted", json!({"BackupId": id}), None);
            ok(&meta)
        }
        (Method::POST, ["backups", "upload"]) => upload(ctx).await,
        // `Backups/Restore` and `Backups/CancelUpload` are paths of their
        // own, not backup ids (the generic layer answers them).
        (_, ["backups", "restore" | "cancelupload" | "fromremote"]) => no_route(ctx),
        (Method::GET, ["backups", id]) => {
            if let Err(r) = ctx.user() {
                return r;
            }
            let b = find_backup(ctx, id);
            match b {
                Some(b) => one(ctx, &b.meta),
                None => not_found("backup", id),
            }
        }
        (Method::DELETE, ["backups", id]) => {
            if let Err(r) = ctx.admin(&["ApplianceAdmin"]) {
                return r;
            }
            let key = find_backup(ctx, id).and_then(|b| b.meta["Id"].as_str().map(str::to_string));
            match key {
                Some(k) => {
                    ctx.app.db().backups.remove(&k);
                    no_content()
                }
                None => not_found("backup", id),
            }
        }
        (Method::GET, ["backups", id, "download"]) => {
            if let Err(r) = ctx.admin(&["ApplianceAdmin"]) {
                return r;
            }
            match find_backup(ctx, id) {
                Some(b) => download(&b),
                None => not_found("backup", id),
            }
        }
        (_, ["backups", ..]) => bad_method(ctx),
        _ => no_route(ctx),
    }
}

fn find_backup(ctx: &Ctx, id: &str) -> Option<Backup> {
    ctx.app
        .db()
        .backups
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(id))
        .map(|(_, b)| b.clone())
}

fn download(b: &Backup) -> Response {
    const CHUNK: u64 = 64 * 1024;
    let size = b.size;
    let seed = b.seed | 1;
    let stream = futures::stream::unfold((0u64, seed), move |(sent, mut state)| async move {
        if sent >= size {
            return None;
        }
        let n = CHUNK.min(size - sent) as usize;
        let chunk = backup_chunk(&mut state, n);
        Some((
            Ok::<_, std::io::Error>(bytes::Bytes::from(chunk)),
            (sent + n as u64, state),
        ))
    });
    let mut r = Body::from_stream(stream).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        b.meta["Filename"].as_str().unwrap_or("backup.sgb")
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// Strips multipart framing from a stream of chunks, passing only the first
/// file part's content on, without buffering more than a boundary's length.
struct MultipartFile {
    boundary: Vec<u8>,
    headers_done: bool,
    finished: bool,
    buf: Vec<u8>,
}

impl MultipartFile {
    fn new(boundary: &str) -> Self {
        Self {
            boundary: format!("\r\n--{boundary}").into_bytes(),
            headers_done: false,
            finished: false,
            buf: Vec::new(),
        }
    }

    /// Feeds a chunk; calls `out` with file content.
    fn feed(&mut self, chunk: &[u8], out: &mut impl FnMut(&[u8])) {
        if self.finished {
            return;
        }
        self.buf.extend_from_slice(chunk);
        if !self.headers_done {
            let Some(pos) = find(&self.buf, b"\r\n\r\n") else {
                if self.buf.len() > 64 * 1024 {
                    self.finished = true;
                }
                return;
            };
            self.buf.drain(..pos + 4);
            self.headers_done = true;
        }
        if let Some(pos) = find(&self.buf, &self.boundary) {
            out(&self.buf[..pos]);
            self.buf.clear();
            self.finished = true;
            return;
        }
        let keep = self.boundary.len().min(self.buf.len());
        let emit = self.buf.len() - keep;
        if emit > 0 {
            out(&self.buf[..emit]);
            self.buf.drain(..emit);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn upload(ctx: &mut Ctx) -> Response {
    let by = match ctx.admin(&["ApplianceAdmin"]) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let ct = ctx.header("content-type").unwrap_or_default().to_string();
    let mut multipart = if ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        let boundary = ct
            .split(';')
            .find_map(|p| p.trim().strip_prefix("boundary="))
            .map(|b| b.trim_matches('"').to_string());
        match boundary {
            Some(b) => Some(MultipartFile::new(&b)),
            None => return validation_error("The multipart boundary is missing.", "Content-Type"),
        }
    } else {
        None
    };
    let body = ctx.body.take().unwrap_or_else(Body::empty);
    let mut stream = body.into_data_stream();
    let mut hasher = Sha256::new();
    let mut count: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(_) => return bad_request(70001, "The upload was interrupted."),
        };
        let mut sink = |data: &[u8]| {
            hasher.update(data);
            count += data.len() as u64;
        };
        match &mut multipart {
            Some(mp) => mp.feed(&chunk, &mut sink),
            None => sink(&chunk),
        }
    }
    if count == 0 {
        return validation_error("The backup file is empty.", "file");
    }
    let id = uuid::Uuid::new_v4().to_string();
    let sha = hex::encode(hasher.finalize());
    let meta = backup_json(&id, count, "Complete", by);
    ctx.app.db().backups.insert(
        id.clone(),
        Backup {
            meta: meta.clone(),
            size: count,
            seed: rand::random(),
        },
    );
    ctx.app
        .uploads
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Upload {
            id,
            bytes: count,
            sha256: sha,
        });
    json_response(StatusCode::CREATED, &meta)
}

pub(crate) async fn notification(ctx: &mut Ctx) -> Response {
    let (_, lower) = rest(ctx, 3);
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    // The state follows maintenance (`Control::set_maintenance`).
    let status = super::management::status(&ctx.app, super::cluster::member(ctx));
    let state = super::management::state_name(&ctx.app);
    match (ctx.method().clone(), l.as_slice()) {
        (Method::GET, ["status"]) => one(ctx, &status),
        (Method::GET, ["status", "state"]) => ok(&json!(state)),
        (Method::GET, ["status", "availability"]) => ok(&json!({
            "ApplianceCurrentState": state, "ApplianceId": status["ApplianceId"],
            "ApplianceName": status["ApplianceName"], "ApplianceVersion": "8.1.0.1",
            "IsPrimary": status["IsPrimary"], "IsReplica": status["IsReplica"],
            "IsReadOnly": status["IsReadOnly"]})),
        (Method::GET, ["status", "cluster"]) => ok(&super::management::cluster_status(&ctx.app)),
        (_, ["status", ..]) => bad_method(ctx),
        _ => no_route(ctx),
    }
}

/// `GET /service/{svc}/swagger/v4/swagger.json`, gzip-compressed when accepted.
pub(crate) async fn swagger(ctx: &mut Ctx, service: &str) -> Response {
    if ctx.method() != Method::GET {
        return bad_method(ctx);
    }
    if !["core", "appliance", "notification", "a2a"].contains(&service) {
        return no_route(ctx);
    }
    let file = format!("{service}.json");
    let mut data = None;
    for dir in &ctx.app.openapi_dirs {
        if let Ok(d) = tokio::fs::read(dir.join(&file)).await {
            data = Some(d);
            break;
        }
    }
    // The configured folders first (an upgraded appliance's documents), then
    // the documents the emulator was built with and routes by.
    let data = data.or_else(|| crate::openapi::raw_document(service).map(<[u8]>::to_vec));
    let Some(data) = data else {
        return api_error(
            StatusCode::NOT_FOUND,
            70003,
            &format!("The OpenAPI document of the {service} service is not available."),
        );
    };
    let gzip = ctx
        .header("accept-encoding")
        .is_some_and(|a| a.to_ascii_lowercase().contains("gzip"));
    let mut r = if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if enc.write_all(&data).is_err() {
            return api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                50000,
                "Compression failed.",
            );
        }
        let Ok(z) = enc.finish() else {
            return api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                50000,
                "Compression failed.",
            );
        };
        let mut r = (StatusCode::OK, z).into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        (StatusCode::OK, data).into_response()
    };
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_strips_framing() {
        let body = b"--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nhello world\r\n--XYZ--\r\n";
        for split in 1..body.len() {
            let mut mp = MultipartFile::new("XYZ");
            let mut got = Vec::new();
            let (a, b) = body.split_at(split);
            mp.feed(a, &mut |d| got.extend_from_slice(d));
            mp.feed(b, &mut |d| got.extend_from_slice(d));
            assert_eq!(got, b"hello world", "split at {split}");
        }
    }
}

//! One `safeguard.call` span per API call (typed, generic, A2A, SPS, events
//! connect), at DEBUG level, with the fields `service`, `method`,
//! `operation` (the path template: ids replaced by `{id}`, never the query
//! string), `status`, `duration_ms` and, on failure, `error` (the kind).
//!
//! A disabled span costs one level check: nothing is templated, allocated
//! or timed, and a call's future carries one pointer-sized `None`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::error::Error;

/// The span of one call while it is enabled (boxed: a call's future holds
/// one pointer, `None` when nobody listens).
pub(crate) struct CallSpan(Option<Box<Active>>);

struct Active {
    span: tracing::Span,
    start: Instant,
}

impl Drop for Active {
    /// The duration, recorded as the span closes (however the call ended:
    /// answered, failed, timed out or dropped).
    fn drop(&mut self) {
        // In milliseconds to the microsecond (`1.234`): no float noise.
        let ms = self.start.elapsed().as_secs_f64() * 1000.0;
        self.span.record(
            "duration_ms",
            tracing::field::display(format_args!("{ms:.3}")),
        );
    }
}

impl CallSpan {
    /// Opens the span of a call of `service` sending `method` to `path`
    /// (a URL path: no host, no query).
    pub(crate) fn new(service: &'static str, method: &str, path: &str) -> Self {
        let span = tracing::debug_span!(
            "safeguard.call",
            service,
            method,
            operation = tracing::field::Empty,
            status = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        if span.is_disabled() {
            return Self(None);
        }
        span.record("operation", template(path).as_str());
        Self(Some(Box::new(Active {
            span,
            start: Instant::now(),
        })))
    }

    /// The span of a call of the appliance at `url` (its service read from
    /// the path).
    pub(crate) fn for_url(method: &reqwest::Method, url: &url::Url) -> Self {
        if !tracing::enabled!(target: "safeguard_sdk::call_span", tracing::Level::DEBUG) {
            return Self(None);
        }
        Self::new(service_of(url.path()), method.as_str(), url.path())
    }

    /// Records the answer's status.
    pub(crate) fn status(&self, status: u16) {
        if let Some(a) = &self.0 {
            a.span.record("status", status);
        }
    }

    /// Records how the call failed (its status when it has one).
    pub(crate) fn error(&self, e: &Error) {
        if let Some(a) = &self.0 {
            if let Some(s) = e.status() {
                a.span.record("status", s.as_u16());
            }
            a.span.record("error", kind(e));
        }
    }

    /// Records the outcome of a call, status then error.
    pub(crate) fn outcome<T>(&self, result: &crate::Result<T>, status: impl Fn(&T) -> Option<u16>) {
        match result {
            Ok(v) => {
                if let Some(s) = status(v) {
                    self.status(s);
                }
            }
            Err(e) => self.error(e),
        }
    }

    /// Runs `call` inside the span, recording its outcome and duration.
    pub(crate) async fn run<T>(
        &self,
        call: impl Future<Output = crate::Result<T>>,
        status: impl Fn(&T) -> Option<u16>,
    ) -> crate::Result<T> {
        let result = Traced {
            inner: call,
            call: self,
        }
        .await;
        self.outcome(&result, status);
        result
    }
}

pin_project_lite::pin_project! {
    /// A future polled inside a call's span (when enabled).
    pub(crate) struct Traced<'a, F> {
        #[pin]
        inner: F,
        call: &'a CallSpan,
    }
}

impl<F: Future> Future for Traced<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = this.call.0.as_ref().map(|a| a.span.enter());
        this.inner.poll(cx)
    }
}

pin_project_lite::pin_project! {
    /// A generated call's future with its span: one pointer more than the
    /// future itself.
    pub(crate) struct Generated<F> {
        #[pin]
        inner: F,
        call: CallSpan,
    }
}

impl<F> Generated<F> {
    pub(crate) fn new(inner: F, call: CallSpan) -> Self {
        Self { inner, call }
    }
}

impl<F> Future for Generated<F>
where
    F: Future<Output = std::result::Result<reqwest::Response, safeguard_api::ExecError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Some(active) = &this.call.0 else {
            return this.inner.poll(cx);
        };
        let answer = {
            let _entered = active.span.enter();
            std::task::ready!(this.inner.poll(cx))
        };
        match &answer {
            Ok(response) => {
                this.call.status(response.status().as_u16());
                if !response.status().is_success() {
                    active.span.record("error", "api");
                }
            }
            Err(e) => {
                if let Some(e) = e.downcast_ref::<crate::Error>() {
                    if let Some(status) = e.status() {
                        this.call.status(status.as_u16());
                    }
                    active.span.record("error", kind(e));
                }
            }
        }
        Poll::Ready(answer)
    }
}

/// The service a path of the appliance belongs to.
pub(crate) fn service_of(path: &str) -> &'static str {
    let mut segments = path.trim_start_matches('/').split('/');
    match (segments.next(), segments.next()) {
        (Some("service"), Some(s)) => [
            ("core", "core"),
            ("appliance", "appliance"),
            ("notification", "notification"),
            ("a2a", "a2a"),
            ("management", "management"),
            ("event", "events"),
        ]
        .iter()
        .find(|(name, _)| s.eq_ignore_ascii_case(name))
        .map_or("other", |(_, service)| service),
        (Some("RSTS"), _) => "rsts",
        (Some("api"), _) => "sps",
        _ => "other",
    }
}

/// `path` with every id segment (digits, a GUID, an SPS key) as `{id}`.
pub(crate) fn template(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if is_id(segment) {
            out.push_str("{id}");
        } else {
            out.push_str(segment);
        }
    }
    out
}

/// Whether a path segment is an id rather than a name: all digits, or
/// hexadecimal with dashes (GUIDs, SPS keys), or percent-encoded (a value).
fn is_id(segment: &str) -> bool {
    if segment.is_empty() {
        return false;
    }
    let digits = segment.strip_prefix('-').unwrap_or(segment);
    if (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())) || segment.contains('%') {
        return true;
    }
    segment.len() >= 16
        && segment.bytes().any(|b| b.is_ascii_digit())
        && segment
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_')
}

/// The kind of an SDK error, for the `error` field.
pub(crate) fn kind(e: &Error) -> &'static str {
    match e {
        Error::Authentication(_) => "authentication",
        Error::Authorization(_) => "authorization",
        Error::NotFound(_) => "not_found",
        Error::Api(_) => "api",
        Error::Sts(_) => "sts",
        Error::CannotRefresh { .. } => "cannot_refresh",
        Error::SignedOut => "signed_out",
        Error::SignInIncomplete(_) => "sign_in_incomplete",
        Error::Tls(_) => "tls",
        Error::Timeout(_) => "timeout",
        Error::Transport(e) if e.is_connect() => "connect",
        Error::Transport(_) => "transport",
        Error::Decode(_) => "decode",
        Error::TooLarge { .. } => "too_large",
        Error::Redirect(_) => "redirect",
        Error::Paging(_) => "paging",
        Error::Config(_) => "config",
        Error::Events(_) => "events",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_templated_and_names_kept() {
        assert_eq!(
            template("/service/core/v4/Users/12/Roles"),
            "/service/core/v4/Users/{id}/Roles"
        );
        assert_eq!(
            template("/service/a2a/v4/Registrations/3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
            "/service/a2a/v4/Registrations/{id}"
        );
        assert_eq!(
            template("/api/configuration/policies/1234567890abcdef12"),
            "/api/configuration/policies/{id}"
        );
        assert_eq!(template("/service/core/v4/Me"), "/service/core/v4/Me");
        assert_eq!(service_of("/service/core/v4/Me"), "core");
        assert_eq!(service_of("/api/authentication"), "sps");
        assert_eq!(
            service_of("/service/management/v4/ApplianceStatus"),
            "management"
        );
    }
}

//! What the proxy answers: the backend's answer passed on (or its upgrade relayed), and its
//! own answers when the backend gave none (busy, failed, timed out), each logged with the
//! service.

use std::sync::Arc;

use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body::Body;

use super::failure::Failure;
use super::future::{FORMAT, ResponseFuture, Sent};
use super::headers::{self, Coding};
use super::upgrade::{ClientUpgrade, Verdict};
use super::{ProxyBody, Shared, length, limit, upstream};
use crate::layer::BackendGone;

impl<B> Shared<B> {
    pub(super) fn service(&self) -> &str {
        self.service.as_deref().unwrap_or("-")
    }

    /// The proxy's own answer to a request it does not forward, for `why`.
    pub(super) fn refuse(
        &self,
        failure: Failure,
        why: &str,
        request: &Request<B>,
    ) -> ResponseFuture<B> {
        let path = request.uri().path();
        tracing::debug!(service = %self.service(), path, "request refused: {why}");
        crate::metrics::proxy_failure(self.service(), failure.label());
        let mut response = failure.response(request.method(), &http::HeaderMap::new());
        if failure == Failure::BadHost && request.version() <= Version::HTTP_11 {
            // As nginx does: a client whose host no server could have is not one to trust
            // with the rest of its connection, whatever it sent after (RFC 9112 section 9.6
            // lets a server close).
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        ResponseFuture::ready(response)
    }

    /// The answer when the request's turn did not come within the limit's bound.
    pub(super) fn busy(&self, sent: &Sent) -> Response<ProxyBody> {
        tracing::warn!(
            service = %self.service(),
            method = %sent.method,
            path = %sent.path.path(),
            "{}",
            Failure::Busy.as_str()
        );
        self.failure_response(Failure::Busy, sent)
    }

    /// The answer when the backend gave none: `error`, or no response head in time.
    pub(super) fn failed(
        &self,
        sent: &Sent,
        error: Option<&upstream::UpstreamError>,
    ) -> Response<ProxyBody> {
        let service = self.service();
        let (method, path) = (&sent.method, sent.path.path());
        let failure = match error {
            Some(error) => Failure::of(error),
            None => Failure::Timeout,
        };
        match error {
            // hyper's "message head is too large" names neither the limit nor the setting
            // that raises it.
            Some(error) if failure == Failure::Local => self.local(sent, error),
            Some(_) if failure == Failure::HeadTooLarge => tracing::warn!(
                service = %service,
                %method,
                path = %path,
                "{}: more than {} header lines (raise `max_response_headers`) or 408 KiB",
                failure.as_str(),
                self.max_response_headers,
            ),
            Some(error) => tracing::warn!(
                service = %service,
                %method,
                path = %path,
                error = %error_chain(error),
                "{}",
                failure.as_str()
            ),
            None => tracing::warn!(
                service = %service,
                %method,
                path = %path,
                timeout = ?self.response_timeout,
                "backend sent no response head in time"
            ),
        }
        self.failure_response(failure, sent)
    }

    /// Logs a failure for want of this process's own resources (`EMFILE` under a flood of
    /// clients): at error, as nginx logs them, but at most once a minute, the others at debug
    /// and counted.
    fn local(&self, sent: &Sent, error: &upstream::UpstreamError) {
        let service = self.service();
        let (method, path) = (&sent.method, sent.path.path());
        let chain = error_chain(error);
        let owned = self.service.clone().unwrap_or_else(|| Arc::from("-"));
        self.local_said.say(
            |quietly| {
                tracing::error!(
                    service = %service,
                    %method,
                    path = %path,
                    error = %chain,
                    local_quietly = quietly,
                    "{} (logged at error at most once a minute; local_quietly: those logged at \
                     debug since the last one)",
                    Failure::Local.as_str()
                );
            },
            || {
                tracing::debug!(
                    service = %service,
                    %method,
                    path = %path,
                    error = %chain,
                    "{}",
                    Failure::Local.as_str()
                );
            },
            move |quietly| {
                tracing::error!(
                    service = %owned,
                    local_quietly = quietly,
                    "requests answered 503 in the last minute for want of this process's own \
                     file descriptors, local ports or memory, logged at debug: {quietly}"
                );
            },
        );
    }

    /// `failure`'s answer, in the client's format (gRPC, JSON, text).
    pub(super) fn failure_response(&self, failure: Failure, sent: &Sent) -> Response<ProxyBody> {
        crate::metrics::proxy_failure(self.service(), failure.label());
        let format = FORMAT
            .into_iter()
            .zip(sent.format.iter())
            .filter_map(|(name, value)| Some((name, value.clone()?)))
            .collect();
        let mut response = failure.response(&sent.method, &format);
        if let Some(gone) = response.extensions_mut().get_mut::<BackendGone>() {
            *gone = std::mem::take(gone).sent_at(sent.sent_at(self.response_timeout));
        }
        if sent.method == http::Method::HEAD {
            // Over HTTP/2 a body after HEAD is a protocol error (hyper sends what it is given).
            *response.body_mut() = ProxyBody::default();
        }
        response
    }

    pub(super) fn answer(
        &self,
        response: Response<upstream::UpstreamBody>,
        client_upgrade: Option<ClientUpgrade>,
        sent: &Sent,
        turn: Option<limit::Turn>,
    ) -> Response<ProxyBody> {
        let (mut parts, mut body) = response.into_parts();
        let verdict = match &client_upgrade {
            Some(upgrade) => upgrade.verdict(&mut parts),
            None if parts.status == StatusCode::SWITCHING_PROTOCOLS => {
                Verdict::Refuse("backend switched protocols unasked")
            }
            None => Verdict::Pass,
        };
        match (verdict, client_upgrade) {
            (Verdict::Relay, Some(client)) => {
                let mut response = Response::from_parts(parts, body);
                let backend = hyper::upgrade::on(&mut response);
                let activity = self.keep_awake.as_ref().map(|service| service.activity());
                client.relay(backend, (activity, turn), self.service.clone());
                let (parts, _) = response.into_parts();
                Response::from_parts(parts, ProxyBody::default())
            }
            (Verdict::Refuse(why), _) => {
                tracing::warn!(service = %self.service(), status = %parts.status, "{why}");
                crate::metrics::proxy_failure(self.service(), Failure::Other.label());
                Failure::Other.response(&sent.method, &http::HeaderMap::new())
            }
            (Verdict::Pass | Verdict::Relay, _) => {
                match headers::remove_hop_by_hop(&mut parts.headers, false) {
                    Coding::Plain => {}
                    Coding::LengthBesideChunks => {
                        // Kept, it gave the next request, another client's, whatever of the
                        // length came after the chunks (nginx 1.22 keeps it; Apache closes).
                        tracing::warn!(
                            service = %self.service(),
                            status = %parts.status,
                            "backend answered with both Content-Length and chunks; \
                             its connection is closed after this answer"
                        );
                        body.close_connection();
                    }
                    Coding::Other => {
                        tracing::warn!(
                            service = %self.service(),
                            status = %parts.status,
                            "backend answered with a transfer coding besides chunked"
                        );
                        crate::metrics::proxy_failure(self.service(), Failure::Other.label());
                        // Its body unread, the connection is closed, not pooled.
                        return Failure::Other.response(&sent.method, &http::HeaderMap::new());
                    }
                }
                if sent.handed.as_ref().is_some_and(|handed| !handed.whole()) && !self.http2 {
                    // Answered before it read the whole body: it may take the rest for the
                    // next request, and answer that one on this connection too.
                    tracing::debug!(
                        service = %self.service(),
                        status = %parts.status,
                        "backend answered before the whole request body went; its connection \
                         is closed after this answer"
                    );
                    body.close_connection();
                }
                length::normalize(parts.status, &mut parts.headers);
                // An HTTP/1.0 client's answer of a known length is left HTTP/1.1: hyper writes
                // it as HTTP/1.0 itself, with the `Connection: keep-alive` the client asked
                // for, where an answer made HTTP/1.0 here has its connection closed (`ab -k`:
                // no reuse). One without a length ends with the connection, which hyper
                // would announce as kept alive all the same.
                parts.version = match sent.version {
                    Version::HTTP_10 if body.size_hint().exact().is_some() => Version::HTTP_11,
                    version => version,
                };
                if let Some(turn) = turn {
                    body.hold(turn);
                }
                body.bound_stalls(self.response_body_timeout, &self.service);
                Response::from_parts(parts, ProxyBody::upstream(body))
            }
        }
    }
}

/// An error and its causes on one line: hyper's own text alone says little ("client error").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

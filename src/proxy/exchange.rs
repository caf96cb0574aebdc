//! Every request but those of the busy path (an HTTP/1.1 request on a kept connection): a new
//! connection, HTTP/2, an upgrade, a turn under a limit; the resend of one that found the
//! backend gone, and the answer to one whose kept connection the backend closed under it.

use std::sync::Arc;

use futures::future::BoxFuture;
use http::{Request, Response};
use http_body::Body;
use tokio::time::Instant;

use super::future::Sent;
use super::upgrade::ClientUpgrade;
use super::upload::Upload;
use super::upstream::{self, Failed};
use super::{ProxyBody, Shared};
use crate::BoxError;
use crate::layer::BackendGone;

impl<B> Shared<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Every other request: a new connection, HTTP/2, an upgrade. With a [`GoneHold`], a
    /// request that found the backend gone before any of it left is held until the backend is
    /// up, then sent again, if `resendable` (once).
    ///
    /// [`GoneHold`]: super::resend::GoneHold
    pub(super) fn finish(
        self: Arc<Self>,
        request: Request<Upload<B>>,
        client_upgrade: Option<ClientUpgrade>,
        mut sent: Sent,
        resendable: bool,
    ) -> BoxFuture<'static, Response<ProxyBody>> {
        Box::pin(async move {
            let (response, unsent) = self.exchange(request, client_upgrade, &mut sent).await;
            let (Some((request, client_upgrade)), Some(hold)) = (unsent, &self.gone_hold) else {
                return response;
            };
            if !resendable || response.extensions().get::<BackendGone>().is_none() {
                return response;
            }
            // Not up within the longest wait: the 502, whose marker tells a layer in front.
            let Some(held) = hold.until_up(sent.sent_at(self.response_timeout)).await else {
                return response;
            };
            let again = sent.again(self.response_timeout);
            let mut response = Arc::clone(&self)
                .finish(request, client_upgrade, again, false)
                .await;
            crate::layer::mark_cold_start(&mut response, held);
            response
        })
    }

    /// The answer to a request whose kept connection failed under it, once a new connection
    /// has told whether the backend is there ([`Pool::kept_closed`](pool::Pool::kept_closed)),
    /// within the request's deadline.
    pub(super) fn kept_closed(
        self: Arc<Self>,
        error: upstream::UpstreamError,
        sent: Sent,
    ) -> BoxFuture<'static, Response<ProxyBody>> {
        Box::pin(async move {
            let error = match &self.upstream {
                upstream::Upstream::Http1(pool) => {
                    // Past the deadline: no answer in time, as for any request.
                    let told = tokio::time::timeout_at(sent.deadline, pool.kept_closed(error));
                    match told.await {
                        Ok(error) => error,
                        Err(_elapsed) => return self.failed(&sent, None),
                    }
                }
                upstream::Upstream::Http2(_) => error,
            };
            self.failed(&sent, Some(&error))
        })
    }

    /// Sends `request` and makes the answer; gives the request back if none of it left.
    async fn exchange(
        &self,
        request: Request<Upload<B>>,
        client_upgrade: Option<ClientUpgrade>,
        sent: &mut Sent,
    ) -> (
        Response<ProxyBody>,
        Option<(Request<Upload<B>>, Option<ClientUpgrade>)>,
    ) {
        let turn = match &self.limit {
            None => None,
            Some(limit) => match limit.turn().await {
                // The request is sent now: the backend's time to answer counts from here, and
                // a refusal is news of the backend up now, not of one up when the request came.
                Some(turn) => {
                    sent.deadline = Instant::now() + self.response_timeout;
                    Some(turn)
                }
                None => return (self.busy(sent), None),
            },
        };
        let answer = tokio::time::timeout_at(sent.deadline, self.upstream.request(request)).await;
        match answer {
            Ok(Ok(response)) => (self.answer(response, client_upgrade, sent, turn), None),
            Ok(Err(Failed { error, unsent })) => (
                self.failed(sent, Some(&error)),
                unsent.map(|request| (request, client_upgrade)),
            ),
            Err(_elapsed) => (self.failed(sent, None), None),
        }
    }
}

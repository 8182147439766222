//! Page-by-page listing as a `Stream`.
//!
//! Safeguard list endpoints take `page` (from 0) and `limit`. [`pages`]
//! turns any "fetch page N" function into a stream of items that stops after
//! the first short page, so the same helper serves the generic verbs
//! ([`SafeguardClient::paginate`](crate::SafeguardClient::paginate)) and the
//! generated typed calls:
//!
//! ```no_run
//! # #[cfg(feature = "core")]
//! # async fn run(client: safeguard_sdk::SafeguardClient) -> safeguard_sdk::Result<()> {
//! use futures::TryStreamExt;
//! let users: Vec<_> = safeguard_sdk::paging::pages(100, move |page, limit| {
//!     let client = client.clone();
//!     async move {
//!         Ok(client.core().users_get_users().page(page as i32).limit(limit as i32).send().await?.into_inner())
//!     }
//! })
//! .try_collect()
//! .await?;
//! # Ok(()) }
//! ```

use std::future::Future;

use futures::Stream;

use crate::error::Result;

/// Items of every page, in order, fetching the next page only when the
/// current one is consumed; stops after a page shorter than `page_size`
/// (or empty). An error ends the stream after being yielded.
pub fn pages<T, F, Fut>(page_size: u32, fetch: F) -> impl Stream<Item = Result<T>> + Send + 'static
where
    T: Send + 'static,
    F: Fn(u32, u32) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<T>>> + Send + 'static,
{
    let page_size = page_size.max(1);
    struct State<T, F> {
        fetch: F,
        page: u32,
        buffer: std::vec::IntoIter<T>,
        done: bool,
    }
    futures::stream::unfold(
        State {
            fetch,
            page: 0,
            buffer: Vec::new().into_iter(),
            done: false,
        },
        move |mut st| async move {
            loop {
                if let Some(item) = st.buffer.next() {
                    return Some((Ok(item), st));
                }
                if st.done {
                    return None;
                }
                match (st.fetch)(st.page, page_size).await {
                    Ok(items) => {
                        st.done = (items.len() as u64) < u64::from(page_size);
                        st.page += 1;
                        st.buffer = items.into_iter();
                    }
                    Err(e) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn stops_after_the_short_page() {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let all: Vec<u32> = pages(10, move |page, limit| {
            c.fetch_add(1, Ordering::SeqCst);
            async move {
                let start = page * limit;
                Ok((start..(start + limit).min(25)).collect())
            }
        })
        .try_collect()
        .await
        .unwrap();
        assert_eq!(all, (0..25).collect::<Vec<_>>());
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn exact_multiple_needs_one_empty_page() {
        let all: Vec<u32> = pages(5, |page, limit| async move {
            let start = page * limit;
            Ok((start..(start + limit).min(10)).collect())
        })
        .try_collect()
        .await
        .unwrap();
        assert_eq!(all.len(), 10);
    }
}

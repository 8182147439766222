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

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};

use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Why a listing was stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PagingError {
    /// Page `page` held the same items (by `Id`) as the page before it: the
    /// server ignores the page asked for, and the listing would never end.
    RepeatedPage {
        /// The repeated page (from 0).
        page: u32,
    },
    /// The link to the next page led back to a page already read.
    Cycle {
        /// The link that was followed before.
        next: String,
    },
    /// The listing had more pages than allowed
    /// ([`Limits::max_pages`](crate::limits::Limits::max_pages)).
    TooManyPages {
        /// The limit.
        limit: u32,
    },
}

impl fmt::Display for PagingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PagingError::RepeatedPage { page } => write!(
                f,
                "page {page} repeats the items of the page before it (the server ignores `page`)"
            ),
            PagingError::Cycle { next } => {
                write!(f, "the next page {next} was already read (a cycle)")
            }
            PagingError::TooManyPages { limit } => {
                write!(
                    f,
                    "more than {limit} pages (raise `max_pages` in the client's `Limits`)"
                )
            }
        }
    }
}

/// What identifies a page's items: their `Id`s, or `None` when some item
/// has none (a `fields=` selection without `Id`), which no repetition check
/// can judge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageIds(Option<u64>);

impl PageIds {
    /// The ids of items that serialize (the generated types).
    pub(crate) fn of_items<T: Serialize>(items: &[T]) -> Self {
        let ids = items.iter().map(|item| {
            serde_json::to_value(item)
                .ok()
                .and_then(|mut v| v.get_mut("Id").map(serde_json::Value::take))
        });
        Self::hash(ids)
    }

    /// The ids of a page as it arrived (a JSON array of objects).
    pub(crate) fn of_json(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Item {
            #[serde(rename = "Id")]
            id: Option<serde_json::Value>,
        }
        match serde_json::from_slice::<Vec<Item>>(body) {
            Ok(items) => Self::hash(items.into_iter().map(|i| i.id)),
            Err(_) => Self(None),
        }
    }

    fn hash(ids: impl Iterator<Item = Option<serde_json::Value>>) -> Self {
        let mut hasher = DefaultHasher::new();
        for id in ids {
            match id {
                Some(serde_json::Value::Null) | None => return Self(None),
                Some(id) => id.to_string().hash(&mut hasher),
            }
        }
        Self(Some(hasher.finish()))
    }
}

/// Items of every page, in order, fetching the next page only when the
/// current one is consumed; stops after a page shorter than `page_size`
/// (or empty). An error ends the stream after being yielded; so does a page
/// that repeats the items of the one before it ([`PagingError::RepeatedPage`]).
pub fn pages<T, F, Fut>(page_size: u32, fetch: F) -> impl Stream<Item = Result<T>> + Send + 'static
where
    T: Serialize + Send + 'static,
    F: Fn(u32, u32) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<T>>> + Send + 'static,
{
    pages_at_most(page_size, None, fetch)
}

/// [`pages`], stopping with [`PagingError::TooManyPages`] instead of
/// fetching more than `max_pages` pages.
pub fn pages_at_most<T, F, Fut>(
    page_size: u32,
    max_pages: Option<u32>,
    fetch: F,
) -> impl Stream<Item = Result<T>> + Send + 'static
where
    T: Serialize + Send + 'static,
    F: Fn(u32, u32) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<T>>> + Send + 'static,
{
    walk(page_size, max_pages, move |page, limit| {
        let fetched = fetch(page, limit);
        async move {
            let items = fetched.await?;
            let ids = PageIds::of_items(&items);
            Ok((items, ids))
        }
    })
}

/// The walk behind [`pages`]: `fetch` also says what identifies the page.
pub(crate) fn walk<T, F, Fut>(
    page_size: u32,
    max_pages: Option<u32>,
    fetch: F,
) -> impl Stream<Item = Result<T>> + Send + 'static
where
    T: Send + 'static,
    F: Fn(u32, u32) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(Vec<T>, PageIds)>> + Send + 'static,
{
    let page_size = page_size.max(1);
    struct State<T, F> {
        fetch: F,
        page: u32,
        buffer: std::vec::IntoIter<T>,
        previous: PageIds,
        done: bool,
    }
    futures::stream::unfold(
        State {
            fetch,
            page: 0,
            buffer: Vec::new().into_iter(),
            previous: PageIds(None),
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
                if let Some(limit) = max_pages.filter(|m| st.page >= *m) {
                    st.done = true;
                    return Some((Err(Error::Paging(PagingError::TooManyPages { limit })), st));
                }
                match (st.fetch)(st.page, page_size).await {
                    Ok((items, ids)) => {
                        if !items.is_empty() && ids.0.is_some() && ids == st.previous {
                            st.done = true;
                            let page = st.page;
                            return Some((
                                Err(Error::Paging(PagingError::RepeatedPage { page })),
                                st,
                            ));
                        }
                        st.done = (items.len() as u64) < u64::from(page_size);
                        st.page = st.page.saturating_add(1);
                        st.previous = ids;
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

    #[derive(Debug, Serialize)]
    struct Item {
        #[serde(rename = "Id")]
        id: u32,
    }

    #[tokio::test]
    async fn a_page_that_repeats_the_one_before_ends_the_listing() {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let mut items = Box::pin(pages(2, move |_page, _limit| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Ok(vec![Item { id: 1 }, Item { id: 2 }]) }
        }));
        for _ in 0..2 {
            assert!(items.try_next().await.expect("first page").is_some());
        }
        let err = items.try_next().await.expect_err("the same page again");
        assert!(
            matches!(err, Error::Paging(PagingError::RepeatedPage { page: 1 })),
            "{err:?}"
        );
        assert!(items.try_next().await.expect("ended").is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn items_without_ids_are_walked_up_to_the_page_limit() {
        let mut count = 0;
        let mut items = Box::pin(pages_at_most(1, Some(3), |_page, _limit| async {
            Ok(vec![serde_json::json!({"Name": "same"})])
        }));
        let err = loop {
            match items.try_next().await {
                Ok(Some(_)) => count += 1,
                Ok(None) => panic!("an endless listing ended by itself"),
                Err(e) => break e,
            }
        };
        assert_eq!(count, 3);
        assert!(matches!(
            err,
            Error::Paging(PagingError::TooManyPages { limit: 3 })
        ));
    }

    #[test]
    fn page_ids_are_read_from_raw_pages_and_items_alike() {
        let raw = PageIds::of_json(br#"[{"Id": 1, "Name": "a"}, {"Id": 2}]"#);
        assert_eq!(raw, PageIds::of_items(&[Item { id: 1 }, Item { id: 2 }]));
        assert!(raw.0.is_some());
        assert!(PageIds::of_json(br#"[{"Name": "a"}]"#).0.is_none());
        assert!(PageIds::of_json(b"not json").0.is_none());
        assert_ne!(raw, PageIds::of_json(br#"[{"Id": 2}, {"Id": 1}]"#));
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

//! Paged listings: `?page=&limit=` in, `{"data": [...], "meta": {...}}` out, as EMQX does.

use serde::{Deserialize, Serialize};

use super::error::ApiError;

/// Items per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 10_000;

/// The paging part of a listing's query string. Both are optional; numbers that do not
/// parse are rejected by the query extractor already.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct PageQuery {
    /// 1-based page number.
    pub page: Option<usize>,
    /// Items per page, 1..=[`MAX_LIMIT`].
    pub limit: Option<usize>,
}

/// A checked page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub page: usize,
    pub limit: usize,
}

impl PageQuery {
    /// Checks the ranges: page from 1, limit 1..=[`MAX_LIMIT`].
    pub fn check(self) -> Result<Paging, ApiError> {
        let page = self.page.unwrap_or(1);
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if page == 0 {
            return Err(ApiError::bad_request(
                "BAD_REQUEST",
                "page must be 1 or more",
            ));
        }
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(
                "BAD_REQUEST",
                format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        Ok(Paging { page, limit })
    }
}

/// A page of a listing.
#[derive(Debug, Serialize)]
pub struct Paged<T> {
    pub data: Vec<T>,
    pub meta: Meta,
}

/// Where a page stands in the whole listing.
#[derive(Debug, Serialize)]
pub struct Meta {
    pub page: usize,
    pub limit: usize,
    /// Items in the whole (filtered) listing, not just this page.
    pub count: usize,
    /// Whether a later page has items.
    pub hasnext: bool,
}

impl Paging {
    /// Cuts this page out of the whole listing, converting only the items shown.
    pub fn apply<I, T>(self, items: Vec<I>, mut convert: impl FnMut(I) -> T) -> Paged<T> {
        let count = items.len();
        let start = (self.page - 1).saturating_mul(self.limit);
        let data: Vec<T> = items
            .into_iter()
            .skip(start)
            .take(self.limit)
            .map(&mut convert)
            .collect();
        Paged {
            meta: Meta {
                page: self.page,
                limit: self.limit,
                count,
                hasnext: start.saturating_add(data.len()) < count,
            },
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_cut() {
        let paging = PageQuery {
            page: Some(2),
            limit: Some(2),
        }
        .check()
        .unwrap();
        let page = paging.apply(vec![1, 2, 3, 4, 5], |i| i * 10);
        assert_eq!(page.data, vec![30, 40]);
        assert_eq!(page.meta.count, 5);
        assert!(page.meta.hasnext);
        let last = Paging { page: 3, limit: 2 }.apply(vec![1, 2, 3, 4, 5], |i| i);
        assert_eq!(last.data, vec![5]);
        assert!(!last.meta.hasnext);
        let beyond = Paging {
            page: usize::MAX,
            limit: MAX_LIMIT,
        }
        .apply(vec![1], |i| i);
        assert!(beyond.data.is_empty());
    }

    #[test]
    fn ranges_are_checked() {
        let defaults = PageQuery::default().check().unwrap();
        assert_eq!(
            defaults,
            Paging {
                page: 1,
                limit: 100
            }
        );
        for (page, limit) in [
            (Some(0), None),
            (None, Some(0)),
            (None, Some(MAX_LIMIT + 1)),
        ] {
            let error = PageQuery { page, limit }.check().unwrap_err();
            assert_eq!(error.status, 400);
        }
    }
}

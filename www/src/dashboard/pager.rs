//! Paging of the API's listings: the arithmetic (pages, the range shown, keeping the
//! page inside the listing as it shrinks), the pager under every table, and the pieces
//! every listing page shares (its rows, a filter that resets the page).

use yew::prelude::*;

use super::api::{Meta, Paged};
use super::format::group;
use super::live::Fetched;
use super::ui::empty_row;

/// Rows per page offered.
pub const SIZES: [usize; 4] = [10, 20, 50, 100];
/// Rows per page to begin with.
pub const DEFAULT_LIMIT: usize = 20;

/// Pages a listing of `count` items takes, `limit` to a page (at least one).
pub fn page_count(count: usize, limit: usize) -> usize {
    count.div_ceil(limit.max(1)).max(1)
}

/// The 1-based numbers of the first and last items on `page`; `(0, 0)` when it has none.
pub fn shown(page: usize, limit: usize, count: usize) -> (usize, usize) {
    let first = (page.max(1) - 1).saturating_mul(limit).saturating_add(1);
    if count == 0 || first > count {
        (0, 0)
    } else {
        (first, first.saturating_add(limit - 1).min(count))
    }
}

/// The page to show for a listing that now has `count` items: the same one, or the last
/// one when the listing shrank below it (a kicked client, a deleted message).
pub fn clamp(page: usize, limit: usize, count: usize) -> usize {
    page.clamp(1, page_count(count, limit))
}

/// `21–40 of 53`, `No items`.
pub fn summary(page: usize, limit: usize, count: usize, noun: &str) -> String {
    match shown(page, limit, count) {
        (0, _) if count == 0 => format!("No {noun}"),
        (0, _) => format!("{} {noun}", group(count as u64)),
        (first, last) => format!(
            "{}–{} of {} {noun}",
            group(first as u64),
            group(last as u64),
            group(count as u64)
        ),
    }
}

/// Keeps `page` inside the listing as it shrinks below it (a kicked client, a deleted
/// message): moves to the last page that has items.
#[hook]
pub fn use_fit_page(page: &UseStateHandle<usize>, meta: Option<Meta>) {
    let page = page.clone();
    let count = meta.map(|m| (m.count, m.limit));
    use_effect_with(count, move |count| {
        if let Some((count, limit)) = *count {
            let fitted = clamp(*page, limit, count);
            if fitted != *page {
                page.set(fitted);
            }
        }
    });
}

#[derive(Properties, PartialEq)]
pub struct PagerProps {
    /// What the last answer said (none before the first).
    pub meta: Option<Meta>,
    pub page: usize,
    pub limit: usize,
    /// Plural noun for the summary: `clients`.
    pub noun: AttrValue,
    pub onpage: Callback<usize>,
    pub onlimit: Callback<usize>,
}

/// `1–20 of 53 clients · ‹ Prev · Page 1 of 3 · Next › · 20 per page`.
#[function_component(Pager)]
pub fn pager(props: &PagerProps) -> Html {
    let count = props.meta.as_ref().map_or(0, |m| m.count);
    let pages = page_count(count, props.limit);
    let page = props.page;
    let hasnext = props.meta.as_ref().is_some_and(|m| m.hasnext) || page < pages;
    let go = |to: usize| {
        let cb = props.onpage.clone();
        Callback::from(move |_: MouseEvent| cb.emit(to))
    };
    let onlimit = {
        let cb = props.onlimit.clone();
        Callback::from(move |e: Event| {
            let value = e
                .target_unchecked_into::<web_sys::HtmlSelectElement>()
                .value();
            cb.emit(value.parse().unwrap_or(DEFAULT_LIMIT));
        })
    };
    html! {
        <nav class="pager" aria-label={format!("Pages of {}", props.noun)}>
            <span class="pager-summary" aria-live="polite">
                { summary(page, props.limit, count, &props.noun) }
            </span>
            <span class="spacer" />
            <button class="small" onclick={go(page.saturating_sub(1).max(1))} disabled={page <= 1}
                aria-label="Previous page">{ "‹ Prev" }</button>
            <span class="pager-page">{ format!("Page {page} of {pages}") }</span>
            <button class="small" onclick={go(page + 1)} disabled={!hasnext}
                aria-label="Next page">{ "Next ›" }</button>
            <label class="pager-size">
                <span class="sr">{ "Rows per page" }</span>
                <select onchange={onlimit}>
                    { for SIZES.iter().map(|&n| html! {
                        <option value={n.to_string()} selected={n == props.limit}>
                            { format!("{n} / page") }
                        </option>
                    }) }
                </select>
            </label>
        </nav>
    }
}

/// A callback that sets a listing's filter (or its page size) and goes back to its first
/// page: what was on page 3 of the old listing says nothing about the new one.
pub fn refilter<V: 'static>(
    state: &UseStateHandle<V>,
    page: &UseStateHandle<usize>,
) -> Callback<V> {
    let (state, page) = (state.clone(), page.clone());
    Callback::from(move |value: V| {
        state.set(value);
        page.set(1);
    })
}

/// The [`Pager`] of a listing whose page and page size live in `page` and `limit`.
pub fn pager_for(
    meta: Option<Meta>,
    page: &UseStateHandle<usize>,
    limit: &UseStateHandle<usize>,
    noun: &'static str,
) -> Html {
    let onpage = {
        let page = page.clone();
        Callback::from(move |p| page.set(p))
    };
    html! {
        <Pager {meta} page={**page} limit={**limit} {noun} {onpage}
            onlimit={refilter(limit, page)} />
    }
}

/// The table body of a paged listing: one line while it loads, if it could not be loaded,
/// or if it is empty (`empty` says why), else `row` for each item.
pub fn listing_rows<T>(
    list: &Fetched<Paged<T>>,
    columns: usize,
    empty: &str,
    row: impl Fn(&T) -> Html,
) -> Html {
    match list.data.as_deref() {
        None if list.loading() => empty_row(columns, "Loading…"),
        None => empty_row(columns, "The list could not be loaded."),
        Some(p) if p.data.is_empty() => empty_row(columns, empty),
        Some(p) => p.data.iter().map(row).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_ranges() {
        assert_eq!(page_count(0, 20), 1);
        assert_eq!(page_count(20, 20), 1);
        assert_eq!(page_count(21, 20), 2);
        assert_eq!(page_count(5, 0), 5);
        assert_eq!(shown(1, 20, 0), (0, 0));
        assert_eq!(shown(1, 20, 5), (1, 5));
        assert_eq!(shown(2, 20, 53), (21, 40));
        assert_eq!(shown(3, 20, 53), (41, 53));
        assert_eq!(shown(4, 20, 53), (0, 0));
        assert_eq!(shown(usize::MAX, usize::MAX, 3), (0, 0));
    }

    #[test]
    fn pages_follow_a_shrinking_listing() {
        assert_eq!(clamp(3, 20, 53), 3);
        assert_eq!(clamp(3, 20, 40), 2);
        assert_eq!(clamp(3, 20, 0), 1);
        assert_eq!(clamp(0, 20, 10), 1);
    }

    #[test]
    fn summaries() {
        assert_eq!(summary(1, 20, 0, "clients"), "No clients");
        assert_eq!(summary(2, 20, 53, "clients"), "21–40 of 53 clients");
        assert_eq!(summary(1, 10, 1, "topics"), "1–1 of 1 topics");
        assert_eq!(summary(9, 10, 12, "topics"), "12 topics");
        assert_eq!(summary(1, 1000, 2345, "x"), "1–1,000 of 2,345 x");
    }
}

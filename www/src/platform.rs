//! The few things the app asks of the browser: the clock, randomness, localStorage and
//! the page's address. On wasm32 they call the browser; natively (clippy, `cargo test`)
//! they are harmless stand-ins, so the rest of the app builds and tests everywhere.

use crate::endpoints::Endpoints;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> f64 {
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    }
}

/// Minutes to add to UTC for local time.
fn utc_offset_minutes(_ms: f64) -> i64 {
    #[cfg(target_arch = "wasm32")]
    {
        // getTimezoneOffset is UTC minus local.
        -(js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(_ms)).get_timezone_offset() as i64)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        0
    }
}

/// `14:03:27.512` in local time.
pub fn time_of_day(ms: f64) -> String {
    clock(ms, utc_offset_minutes(ms))
}

/// `HH:MM:SS.mmm` for `ms` since the epoch, shifted by `offset_minutes`.
pub fn clock(ms: f64, offset_minutes: i64) -> String {
    let total = ms as i64 + offset_minutes * 60_000;
    let day_ms = total.rem_euclid(86_400_000);
    let (h, m) = (day_ms / 3_600_000, day_ms / 60_000 % 60);
    let (s, milli) = (day_ms / 1000 % 60, day_ms % 1000);
    format!("{h:02}:{m:02}:{s:02}.{milli:03}")
}

/// A random 32-bit number (not for cryptography: client IDs).
pub fn random_u32() -> u32 {
    #[cfg(target_arch = "wasm32")]
    {
        (js_sys::Math::random() * f64::from(u32::MAX)) as u32
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(now_ms() as u64);
        h.finish() as u32
    }
}

fn local_storage() -> Option<web_sys::Storage> {
    if cfg!(target_arch = "wasm32") {
        web_sys::window()?.local_storage().ok()?
    } else {
        None
    }
}

/// A value from localStorage.
pub fn load(key: &str) -> Option<String> {
    local_storage()?.get_item(key).ok()?
}

/// Saves a value in localStorage; false when the browser refused (quota, private mode).
pub fn save(key: &str, value: &str) -> bool {
    local_storage().is_some_and(|s| s.set_item(key, value).is_ok())
}

/// Moves the keyboard focus to the element with this id, if there is one.
pub fn focus(id: &str) {
    if !cfg!(target_arch = "wasm32") {
        return;
    }
    use wasm_bindgen::JsCast;
    let element = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.get_element_by_id(id))
        .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok());
    if let Some(element) = element {
        let _ = element.focus();
    }
}

/// The broker's endpoints as seen from this page: the page was served by the broker.
pub fn endpoints() -> Endpoints {
    if !cfg!(target_arch = "wasm32") {
        return Endpoints::from_location("http:", "", "null");
    }
    let location = web_sys::window().map(|w| w.location());
    let read = |f: fn(&web_sys::Location) -> Result<String, wasm_bindgen::JsValue>| {
        location
            .as_ref()
            .and_then(|l| f(l).ok())
            .unwrap_or_default()
    };
    Endpoints::from_location(
        &read(web_sys::Location::protocol),
        &read(web_sys::Location::hostname),
        &read(web_sys::Location::origin),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_faces() {
        assert_eq!(clock(0.0, 0), "00:00:00.000");
        // 2024-01-01T13:45:07.089Z
        let ms = 1_704_116_707_089.0;
        assert_eq!(clock(ms, 0), "13:45:07.089");
        assert_eq!(clock(ms, 60), "14:45:07.089");
        assert_eq!(clock(ms, -14 * 60), "23:45:07.089");
    }

    #[test]
    fn native_stand_ins() {
        assert!(now_ms() > 1.6e12);
        assert_eq!(load("anything"), None);
        assert!(!save("k", "v"));
        assert_eq!(endpoints().ws, "ws://127.0.0.1:8083/mqtt");
    }
}
